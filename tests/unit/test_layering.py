"""DESIGN §2: cosem/ and crypto/ import no IO or framework and read no clock.

Only crypto/ imports crypto.hazmat.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "meterguard"
# DESIGN §2: no network, no event loop, no framework, no ORM, no clock in cosem/ or crypto/.
FORBIDDEN = {
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "select",
    "threading",
    "multiprocessing",
    "subprocess",
    "time",
    "paho",
    "aiomqtt",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "httpx",
    "requests",
    "urllib",
    "http",
    "logging",
    "random",
    "click",
    "rich",
}
# The protocol core is pure: not even files. (crypto/ may persist keys and the PKI on disk.)
FORBIDDEN_IN_COSEM = {"os", "pathlib", "io", "shutil", "tempfile", "sqlite3", "json"}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}
PURE = [p for pkg in ("cosem", "crypto") for p in sorted((SRC / pkg).rglob("*.py"))]


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(SRC)))
def test_pure_core_does_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for name in _imports(tree):
        assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
        if path.parent.name == "cosem":
            assert name.split(".")[0] not in FORBIDDEN_IN_COSEM, f"{path.name} imports {name}"
            assert not name.startswith("meterguard.crypto.hazmat"), (
                f"{path.name} reaches into crypto.hazmat"
            )
            assert not name.startswith(("meterguard.meter", "meterguard.headend")), (
                f"{path.name}: {name}"
            )
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLOCK_CALLS
            and not node.args  # builder.time(now) passes the time in; .now() reads it
        ):
            pytest.fail(f"{path.name}:{node.lineno} reads the clock ({ast.unparse(node.func)})")


def test_only_crypto_imports_hazmat() -> None:
    for path in sorted(SRC.rglob("*.py")):
        if "crypto" in path.relative_to(SRC).parts:
            continue
        names = _imports(ast.parse(path.read_text(encoding="utf-8")))
        assert not any(n.startswith("meterguard.crypto.hazmat") for n in names), path


def test_every_module_has_a_docstring() -> None:
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{path.relative_to(SRC)} has no module docstring"


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""x"""\nimport socket\nimport datetime as dt\ndt.datetime.now()\n', encoding="utf-8"
    )
    tree = ast.parse(bad.read_text(encoding="utf-8"))
    assert "socket" in _imports(tree)
    calls = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    ]
    assert any(c.func.attr in CLOCK_CALLS for c in calls)  # type: ignore[attr-defined]
