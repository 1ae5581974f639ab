"""The notation profiles derive ships, as the package ``derive.notations`` (see
derive/resources.py and derive/printing/notation.py)."""
