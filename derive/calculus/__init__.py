"""The calculus: derivatives of a cell, as values (no strings, no printing).

``algebra`` (the middle layer: sums of products of d(.), d_2(.), W and recursion symbols),
``rules`` (the four forward rules; the forward, reverse and Jacobian derivations), ``derivation``
(:func:`derive`: a cell's whole derivation, cached) and ``numeric`` (any derived expression at
concrete values). Imports only :mod:`derive.spec`; a :class:`Derivation`'s notebook
conveniences (``_repr_latex_``, ``.sympy()``) reach the printers lazily, when called.
"""
