"""``python -m meterguard``: the same as the ``meterguard`` command."""

from meterguard.cli.main import main

main()
