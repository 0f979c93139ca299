"""Metrics, traces and logs, and the request id every log line carries."""
