"""The request-overhead suite (``request_overhead``): server CPU per request when the model
costs nothing, this checkout against a baseline checkout."""
