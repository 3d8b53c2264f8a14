"""Signing keys of the service (no Flask here)."""
