"""WSGI entry point inside the package (``authz.wsgi:app``) for servers that import by name."""

from __future__ import annotations

from authz import create_app

app = create_app()
