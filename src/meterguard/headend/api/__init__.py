"""The head-end web API (FastAPI): app factory, routes, request and response models."""
