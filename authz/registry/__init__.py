"""Institutions and OAuth clients (no Flask here)."""
