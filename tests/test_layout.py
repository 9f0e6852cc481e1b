"""The floors of ``portal/`` and what each may import: a module imports from its own floor or
the floors below, never above (README, "Layout"). The web's features (API, customer pages,
dashboard) do not import one another."""

from __future__ import annotations

import ast
from pathlib import Path

import portal

PACKAGE = Path(portal.__file__).parent

#: Lowest first. ``portal`` itself is the app factory, which assembles the web.
FLOORS = ["core", "i18n", "mail", "domain", "web", "app", "cli"]
FEATURES = ["portal.web.api", "portal.web.pages", "portal.web.dashboard"]


def floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS.index("app" if parts == ["portal"] else parts[1])


def imported(source: str) -> set[str]:
    """Every portal module ``source`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "portal" or node.module.startswith("portal."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("portal"))
    return found


def violations(sources: dict[str, str]) -> list[str]:
    """What breaks the rules, among modules given by name and source."""
    found = []
    for name, source in sources.items():
        for other in sorted(imported(source)):
            if floor(other) > floor(name):
                found.append(f"{name} ({FLOORS[floor(name)]}) imports {other}")
            mine = [f for f in FEATURES if name.startswith(f)]
            theirs = [f for f in FEATURES if other.startswith(f)]
            if mine and theirs and mine != theirs:
                found.append(f"{name} imports another feature's {other}")
    return found


def sources() -> dict[str, str]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts or "_build" in path.parts:
            continue  # Alembic's scripts; the wheel's build step (not installed)
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path.read_text()
    return found


def test_every_module_lives_on_a_floor():
    strays = [n for n in sources() if n != "portal" and n.split(".")[1] not in FLOORS]
    assert strays == [], f"put them in one of {FLOORS}"


def test_no_floor_imports_one_above_it_and_features_stay_apart():
    assert violations(sources()) == []


def test_the_rules_see_what_breaks_them():
    """A late import upwards, and one feature reaching into another, are both found."""
    breaking = {
        "portal.core.models": "def f():\n    from portal.web import auth\n",
        "portal.web.pages.views": "from portal.web.dashboard import labels\n",
        "portal.domain.signin": "from portal.mail import outbox\nimport portal.core.db\n",
    }
    assert violations(breaking) == [
        "portal.core.models (core) imports portal.web",
        "portal.web.pages.views imports another feature's portal.web.dashboard",
    ]
