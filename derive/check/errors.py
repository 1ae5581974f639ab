"""The usage error of ``derive check`` (exit status 2)."""

from __future__ import annotations


class CheckError(ValueError):
    """A usage error of ``derive check`` (exit status 2); the message says expected vs got."""
