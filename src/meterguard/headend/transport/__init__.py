"""Head-end transport adapters around the sans-IO DLMS client."""
