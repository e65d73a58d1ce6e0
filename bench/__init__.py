"""Benchmarks: ``make bench`` (``python -m bench``) runs them and writes docs/benchmarks.md.

These are measurements, not tests: nothing here asserts on timing, and pytest
does not collect this package (its test paths are ``tests/``).
"""
