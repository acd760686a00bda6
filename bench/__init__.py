"""Benchmarks (run from the repository root: `make bench`)."""
