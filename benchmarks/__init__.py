"""Performance benchmarks (not tests): `python -m benchmarks.bench_env`."""
