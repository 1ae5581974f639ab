"""The d(x) reader of ``derive check``: derivations in derive's own notation (seed 001 eqs
(7)-(25), derive's LaTeX export: forward mode in d(.), d_2(.), weight matrices and recursion
symbols; reverse-mode adjoints ``\\bar{u}_t``, ``\\delta u_{t-1}``), judged against derive's
cells.

A folder of its own because ``derive check`` has two readers; the other reads the author's own
notation (:mod:`derive.check.reverse`). The pipeline, in reading order:

* the notation, as tables: :mod:`.tables`
* reading a file: :mod:`.blocks` (display math) -> :mod:`.chains` (equations) -> :mod:`.scope`
  (lines not judged, and why) -> :mod:`.reading` (the file as a :class:`~.reading.Document`)
* reading a side: :mod:`.atoms` (symbols and activation names) -> :mod:`.symbols` (what a symbol
  names in a cell and notation) -> :mod:`.parser` (the grammar) -> :mod:`.syntax` (the tree);
  :mod:`.errors`
* meaning: :mod:`.factors`, :mod:`.normal` (canonical vectors), :mod:`.context` (a cell under a
  notation: engine values), :mod:`.shapes`, :mod:`.points` (numbers), :mod:`.latex`
* judging: :mod:`.verdict` (the values passed between steps) -> :mod:`.judge` (one line) ->
  :mod:`.differences` (naming the wrong terms) -> :mod:`.lines` (every line of a document under
  one context) -> :mod:`.candidates`, :mod:`.infer` (which cell and notation; the report)
"""
