"""The API's routes, one module per area; each only parses, authorises and calls a service."""
