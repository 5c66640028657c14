"""Transport adapters for the meter: DLMS over TCP (wrapper, port 4059); MQTT comes with the PKI."""
