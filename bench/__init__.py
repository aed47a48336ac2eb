"""Benchmarks: relay side by side with the raw baseline in the same run (`make bench`)."""
