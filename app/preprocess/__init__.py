"""Turning request bytes into model-ready arrays, before anything is queued for inference."""
