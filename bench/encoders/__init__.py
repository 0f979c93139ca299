"""Benchmarks of the export tools: parity, export time and graph size per encoder family."""
