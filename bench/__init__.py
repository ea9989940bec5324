"""Benchmarks, kept apart from the library; `sg3stream bench` runs them. Each section returns plain dicts."""
