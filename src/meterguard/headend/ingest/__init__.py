"""Head-end ingest: what happens to a message from the broker before it is stored."""
