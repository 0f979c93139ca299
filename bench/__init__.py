"""Benchmarks: FusionServe against the in-process limit and peer frameworks, and the suites
that measure one change at a time. ``bench.harness`` holds what they share; each other
subpackage is one suite (see bench/README.md)."""
