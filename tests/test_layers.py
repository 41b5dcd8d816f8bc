"""Layers point one way (DESIGN.md principle 5): cli → server → control/dashboard → gateway → logs →
store → providers/usage/transport → the floor (asgi, errors, ids, settings, ...). A module never imports
one of a higher layer: not at the top, not inside a function, not under ``TYPE_CHECKING`` (a type names
the layer as surely as a call does)."""

from __future__ import annotations

import ast
from pathlib import Path

import modelport

SOURCES = Path(modelport.__file__).parent
# Top to bottom; packages on one row are one layer and may use each other. A module not named here
# (errors.py, settings.py, asgi.py, ...) is the floor: every layer may import it, it imports only the floor.
LAYERS = (
    ("cli", "__main__"),
    ("server",),
    ("control", "dashboard"),
    ("gateway",),
    ("logs",),
    ("store",),
    ("providers", "usage", "transport"),
)
RANK = {package: rank for rank, row in enumerate(LAYERS) for package in row}
FLOOR = len(LAYERS)
# The SDK (modelport.client, and the package's __init__ that names it) is the gateway's client, not a
# layer of the gateway: it may use the floor (sse.py), and no layer of the gateway may import it.
SDK = frozenset({"client", "__init__"})


def layer_of(package: str) -> int:
    return RANK.get(package, FLOOR)


def module_name(path: Path) -> tuple[str, bool]:
    """``modelport.gateway.forward`` for src/modelport/gateway/forward.py; whether it is a package."""
    parts = list(path.relative_to(SOURCES.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every ``modelport`` module ``source`` imports, absolute or relative, wherever the import sits."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "modelport":  # "from modelport import sse", "from .. import errors": the names are modules
                found += [(node.lineno, f"modelport.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, name))
    return sorted((line, name) for line, name in found if name == "modelport" or name.startswith("modelport."))


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(source: str, module: str, is_package: bool) -> list[str]:
    """Each import in ``source`` that points up the layers (or into the SDK), as ``line N: <module>``."""
    own = package_of(module)
    wrong = []
    for line, name in imported_modules(source, module, is_package):
        target = package_of(name)
        if target == own:
            continue
        if own in SDK:
            bad = target not in SDK and layer_of(target) != FLOOR
        else:
            bad = target in SDK or layer_of(target) < layer_of(own) or (layer_of(own) == FLOOR and layer_of(target) != FLOOR)
        if bad:
            wrong.append(f"line {line}: {name}")
    return wrong


def test_every_import_points_down_the_layers() -> None:
    modules = sorted(SOURCES.rglob("*.py"))
    assert len(modules) > 100  # the whole package was read, not an empty directory
    offending = {}
    for path in modules:
        module, is_package = module_name(path)
        if found := upward_imports(path.read_text(), module, is_package):
            offending[module] = found
    assert offending == {}, "imports pointing up the layers:\n" + "\n".join(
        f"  {module} imports {', '.join(found)}" for module, found in offending.items())


def test_the_check_finds_each_kind_of_upward_import() -> None:
    """The scan above would pass on anything if it found nothing: each spelling of an import must count."""
    source = '''
from ..server.http import send_error
from modelport.gateway import pipeline
import modelport.control.app
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from ..logs.record import LogRecord
def later():
    from ..gateway.hosts import HostRules
from .. import cli
from ..errors import GatewayError
from ..store import open_store
from .base import Target
'''
    found = upward_imports(source, "modelport.logs.writer", False)
    assert found == ["line 2: modelport.server.http", "line 3: modelport.gateway", "line 4: modelport.control.app",
                     "line 9: modelport.gateway.hosts", "line 10: modelport.cli"]
    assert upward_imports("from ...logs.record import LogRecord\n", "modelport.providers.replicate.webhooks", False) == \
        ["line 1: modelport.logs.record"]
    assert upward_imports("from .store.base import StoreUnavailable\n", "modelport.settings", False) == \
        ["line 1: modelport.store.base"]
    assert upward_imports("from . import client\n", "modelport", True) == []
    assert upward_imports("from ..gateway import pipeline\n", "modelport.client._client", False) == \
        ["line 1: modelport.gateway"]
