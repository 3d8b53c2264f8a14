"""Performance harness for authz: ``python benchmarks/run.py NAME [--quick] [--json]``."""
