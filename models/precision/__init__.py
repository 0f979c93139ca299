"""Reduced-precision copies of a bundle (float16 models for GPUs), checked against the source."""
