"""Printing: one derived expression at a time, as LaTeX (``latex``) or SymPy (``symbolic``),
and the notation profiles that rename symbols (``notation``). Imports the spec and the calculus."""
