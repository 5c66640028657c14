"""The MQTT contract every party shares: topic names and kinds, and the pinned TLS context."""
