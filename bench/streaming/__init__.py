"""Streaming benchmark helpers and results (``python -m bench.bench_streaming``)."""
