"""Benchmarks, runnable as modules (e.g. ``python -m bench.matching``)."""
