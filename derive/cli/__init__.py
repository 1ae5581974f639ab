"""The ``derive`` command line: ``commands`` (the parser, list, show, latex, generate, verify)
and one module per further command group (``flow_cli``; ``derive check`` registers itself from
:mod:`derive.check`). :func:`main` is the console script's entry point."""

from .commands import main

__all__ = ["main"]
