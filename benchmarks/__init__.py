"""Benchmarks (not part of the product). ``benchmarks.bench_settings`` serves the project's
URLs plus a trivial endpoint for side-by-side HTTP comparisons."""
