"""HTTP layer: the FastAPI application factory, routes and error rendering."""
