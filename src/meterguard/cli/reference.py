"""The CLI reference (``docs/cli.md``), generated from the commands' own help texts.

:func:`render` walks the whole ``meterguard`` command tree and writes each command's usage,
help and options as Markdown. Run ``python -m meterguard.cli.reference docs/cli.md`` after
changing a command; the test suite compares the committed file with :func:`render`, so the
reference cannot drift from the code. It documents; it runs no command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from meterguard.cli.main import main as root

__all__ = ["render"]


def _section(cmd: click.Command, path: str, out: list[str]) -> None:
    ctx = click.Context(cmd, info_name=path)
    usage = cmd.collect_usage_pieces(ctx)
    if path != "meterguard":
        out += [f"## `{path}`", ""]
    out += ["```text", f"{path} {' '.join(usage)}".rstrip(), "```", ""]
    if cmd.help:
        out += [cmd.help.strip(), ""]
    rows = []
    for p in cmd.params:
        if isinstance(p, click.Option) and p.name != "help":
            record = p.get_help_record(ctx)
            if record:
                text = record[1].replace("|", "\\|")
                rows.append(f"| `{record[0]}` | {text} |")
        elif isinstance(p, click.Argument):
            rows.append(f"| `{p.human_readable_name}` | argument |")
    if rows:
        out += ["| option | what it does |", "|---|---|", *rows, ""]
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            _section(sub, f"{path} {name}", out)


def render() -> str:
    """The reference as Markdown."""
    out = [
        "# meterguard CLI reference",
        "",
        "Generated from the commands' own help (`python -m meterguard.cli.reference docs/cli.md`);",
        "do not edit by hand.",
        "`meterguard COMMAND --help` shows the same in a terminal.",
        "",
    ]
    _section(root, "meterguard", out)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/cli.md")
    out.write_text(render(), encoding="utf-8")
