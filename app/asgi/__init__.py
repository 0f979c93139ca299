"""The HTTP layer every protocol shares: the service's ASGI middleware (request ids, metrics,
traces, API keys, the request gate), the error envelope, the lean path of the classification
routes and the client-disconnect watch."""
