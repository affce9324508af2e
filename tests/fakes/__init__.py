"""Fakes that speak real protocols on loopback, for tests and benchmarks (never mocks of our own code)."""
