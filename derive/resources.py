"""Where derive's data lives: the Jinja templates, the shipped notations and the package of
built-in kernels. Every module that reads one of them asks here (one place to move them).

They are packages of the installed distribution, found through the import system: the
repository keeps them as top-level folders (``templates/``, ``notations/``, ``generated/``)
and ``pyproject.toml`` maps them to ``derive.templates``, ``derive.notations`` and
``derive.kernels``; a wheel holds them inside ``derive/``. Nothing here assumes a checkout.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The folder above the ``derive`` package (a source checkout's root, or site-packages)."""


def _package_dir(package: str, folder: str) -> Path:
    """The folder of ``package`` as the import system finds it; the checkout's ``folder`` when
    derive runs from a source tree that is not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return ROOT / folder


TEMPLATES = _package_dir("derive.templates", "templates")
NOTATIONS = _package_dir("derive.notations", "notations")
GENERATED = _package_dir("derive.kernels", "generated")
KERNELS_PACKAGE = "derive.kernels"
"""The import name of the built-in kernels (``import derive.kernels.lstm``)."""

CHECKOUT = (GENERATED == ROOT / "generated" and (ROOT / "pyproject.toml").is_file()
            and TEMPLATES == ROOT / "templates")
"""True when derive runs from a source checkout (an editable install): only there does a plain
``derive generate`` rewrite the built-in kernels (in an installed package they are its data)."""
