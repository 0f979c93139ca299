"""Several worker processes on one port: the supervisor, and what the workers share (readiness,
metrics, reloads)."""
