"""The selector-quality comparison `benchmarks/quality.py` runs (and a shrunk test runs)."""
