"""Tiny, generated model files for tests, the demo and benchmarks (no downloads, ever)."""
