"""Head-end domain services: operations the API and CLI call (no web framework, no SQL)."""
