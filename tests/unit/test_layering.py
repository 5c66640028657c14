"""DESIGN §2: the layers and their one-way imports.

* cosem/ and crypto/ (and the pure contracts: identity, the MQTT topics) import no IO or
  framework and read no clock; only crypto/ imports crypto.hazmat;
* the head-end never imports the meter (they meet only on the wire), nor the assembly
  layer; the meter never imports the head-end;
* services hold no SQL and no web framework (repositories in headend/store/ hold the SQL);
  routes and pages hold no SQL;
* system/ (assembly) is imported only by the CLI and the demo.
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
PURE = [p for pkg in ("cosem", "crypto") for p in sorted((SRC / pkg).rglob("*.py"))] + [
    SRC / "identity.py",
    SRC / "mqtt" / "contract.py",
]


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


def _package_imports(pkg: str) -> list[tuple[str, str]]:
    """(module path, imported name) for every import in a package of src/."""
    return [
        (str(path.relative_to(SRC)), name)
        for path in sorted((SRC / pkg).rglob("*.py"))
        for name in _imports(ast.parse(path.read_text(encoding="utf-8")))
    ]


# (package, imports it must never make)
BOUNDARIES = [
    ("headend", ("meterguard.meter", "meterguard.system", "meterguard.demo", "meterguard.cli")),
    ("meter", ("meterguard.headend", "meterguard.system", "meterguard.demo", "meterguard.cli")),
    ("headend/services", ("sqlalchemy", "fastapi", "starlette")),
    ("headend/api", ("sqlalchemy",)),
    ("headend/web", ("sqlalchemy",)),
    ("headend/ingest", ("fastapi", "starlette")),
    ("firmware", ("meterguard.headend", "meterguard.meter", "meterguard.system")),
    # Analytics is computation over arrays: the meter and the head-end both use it.
    (
        "analytics",
        ("meterguard.headend", "meterguard.meter", "meterguard.system", "meterguard.cli"),
    ),
    ("audit", ("meterguard.headend", "meterguard.meter", "meterguard.system")),
    ("mqtt", ("meterguard.headend", "meterguard.meter", "meterguard.system")),
    ("broker", ("meterguard.headend", "meterguard.meter", "meterguard.system")),
]


@pytest.mark.parametrize(("pkg", "forbidden"), BOUNDARIES, ids=[b[0] for b in BOUNDARIES])
def test_layers_import_one_way(pkg: str, forbidden: tuple[str, ...]) -> None:
    bad = [(path, name) for path, name in _package_imports(pkg) if name.startswith(forbidden)]
    assert not bad, bad


def test_only_the_cli_and_the_demo_assemble_the_system() -> None:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ("system", "cli") or rel.name == "demo.py":
            continue
        names = _imports(ast.parse(path.read_text(encoding="utf-8")))
        assert not any(n.startswith("meterguard.system") for n in names), rel
