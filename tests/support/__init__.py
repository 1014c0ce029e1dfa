"""Helpers shared by the test suites: simulated experiments and what they must produce."""
