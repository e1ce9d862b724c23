"""Benchmarks and the soak test: figures printed, never asserted in timing terms."""
