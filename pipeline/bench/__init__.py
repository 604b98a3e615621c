"""Benchmarks: they drive the shipped stage cores and worker, never copies of them."""
