"""The import rule of docs/architecture.md: a service imports only carbon_common and itself.

Every module of the product packages is parsed (not imported) and each import, including those inside
functions, is checked: a service (extender, carbon_feed, deferral, rebalancer) may import carbon_common
and its own package; carbon_common may import none of this repository's packages but itself. The
repository's other top-level packages (bench, tests, hack) are never imported by product code, which
ships without them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = frozenset({"extender", "carbon_feed", "deferral", "rebalancer"})
SHARED = "carbon_common"
PRODUCT = SERVICES | {SHARED}
# Top-level names of this repository: an import of any of these is first-party and checked.
FIRST_PARTY = PRODUCT | {"bench", "tests", "hack"}


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted name) of every absolute import in the tree.

    Relative imports are skipped: Python refuses one that climbs above the top-level package, so they
    always stay in the module's own package.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations(source: str, module: str) -> list[str]:
    """Every import in `source` (the module `module`) that breaks the rule, as readable messages."""
    own = module.split(".")[0]
    allowed = {own} | ({SHARED} if own in SERVICES else set())
    bad = []
    for line, name in _imported(ast.parse(source)):
        top = name.split(".")[0]
        if top in FIRST_PARTY and top not in allowed:
            bad.append(f"{module}:{line} imports {name} ({own} may import only {', '.join(sorted(allowed))})")
    return bad


def _product_modules() -> list[tuple[str, Path]]:
    modules = []
    for package in sorted(PRODUCT):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            modules.append((".".join(parts), path))
    return modules


def test_every_product_package_is_checked() -> None:
    found = {name.split(".")[0] for name, _ in _product_modules()}
    assert found == PRODUCT


def test_no_service_imports_another_service_and_carbon_common_imports_none() -> None:
    bad = []
    for module, path in _product_modules():
        bad.extend(violations(path.read_text(encoding="utf-8"), module))
    assert bad == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("deferral.planner", "from carbon_feed import windows\n"),
        ("deferral.planner", "import carbon_feed.windows as w\n"),
        ("extender.app", "def f():\n    from deferral.planner import Plan\n"),  # a lazy import counts
        ("carbon_common.snapshot", "from extender.carbon import CarbonView\n"),
        ("carbon_common.snapshot", "import carbon_feed\n"),
        ("extender.demo", "from tests.fakes.clock import FakeClock\n"),
        ("carbon_feed.api", "from bench.evaluation import temporal\n"),
    ],
)
def test_checker_catches_a_forbidden_import(module: str, source: str) -> None:
    assert len(violations(source, module)) == 1


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("deferral.planner", "from carbon_common import windows\nfrom deferral.annotations import X\n"),
        ("carbon_feed.providers.static", "from ..model import Reading\nfrom . import base\n"),
        ("carbon_common.snapshot", "from carbon_common.timeutil import utcnow\nimport orjson\n"),
        ("extender.app", "import aiohttp\nfrom kubernetes_asyncio import client\n"),
    ],
)
def test_checker_allows_own_package_shared_code_and_third_parties(module: str, source: str) -> None:
    assert violations(source, module) == []
