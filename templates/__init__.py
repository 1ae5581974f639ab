"""The Jinja templates of derive's printers, shipped as the package ``derive.templates``
(see derive/resources.py)."""
