"""Benchmarks: scripts that print figures. Never part of the default test run."""
