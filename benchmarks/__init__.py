"""Benchmarks for shapnet: ``python -m benchmarks <name> [options]``; ``python -m benchmarks --list``."""
