"""Benchmarks, run by hand (`make bench` or `python -m bench`), never by the
test suite. Each run starts everything it measures on loopback."""
