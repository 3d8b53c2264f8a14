"""Periodic jobs under database leases (no Flask here)."""
