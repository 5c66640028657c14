"""The dashboard (server-rendered pages, static assets)."""
