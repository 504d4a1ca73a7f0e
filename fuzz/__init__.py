"""Fuzzing support (``tensoropt.fuzz``): random IR generators, reused by the
property tests and, later, by coverage-guided campaigns."""
