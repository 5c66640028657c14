"""The ``meterguard`` command line: thin commands over the library APIs."""
