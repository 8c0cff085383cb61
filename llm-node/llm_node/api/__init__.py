"""HTTP layer: routes, errors and ASGI middleware."""
