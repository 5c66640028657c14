"""The CLI explains itself: every command has a help text, every option a help line.

Walks the whole ``meterguard`` command tree (as ``--help`` would show it), so an option added
without help fails here, not in a user's terminal.
"""

from __future__ import annotations

from pathlib import Path

import click

from meterguard.cli.main import main
from meterguard.cli.reference import render


def _commands(cmd: click.Command, path: str) -> list[tuple[str, click.Command]]:
    found = [(path, cmd)]
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            found += _commands(sub, f"{path} {name}")
    return found


def test_every_command_and_option_has_help() -> None:
    commands = _commands(main, "meterguard")
    assert len(commands) > 40
    no_help = [path for path, cmd in commands if not (cmd.help or "").strip()]
    bare = [
        f"{path} {'/'.join(p.opts)}"
        for path, cmd in commands
        for p in cmd.params
        if isinstance(p, click.Option) and not (p.help or "").strip()
    ]
    assert not no_help and not bare, (no_help, bare)


def test_the_cli_reference_in_the_docs_is_the_commands_own_help() -> None:
    doc = Path(__file__).resolve().parents[3] / "docs" / "cli.md"
    assert doc.read_text(encoding="utf-8") == render(), (
        "docs/cli.md is stale: run python -m meterguard.cli.reference docs/cli.md"
    )
