"""The managed Mosquitto broker: generated TLS configuration, ACLs and the broker process."""
