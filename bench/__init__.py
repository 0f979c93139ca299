"""Benchmark harness: FusionServe against the in-process limit and peer serving frameworks."""
