"""Documents: whole derivations laid out as LaTeX (``latex_doc``: equation rows, line breaking,
fragments and articles) and as terminal text (``text``, the same layout in Unicode)."""
