"""A third-party package whose `__init__` imports far more than a function uses, made lazy.

`aws_lambda_powertools.event_handler`'s `__init__` imports every resolver Powertools has (AppSync
with asyncio, Bedrock, VPC Lattice, ...) and `aws_lambda_powertools.utilities.data_classes`'s
some 40 event classes, while an API function needs one resolver and the HTTP API's event class
(and `event_handler.openapi`'s imports its document merger, which no function uses).
Importing any submodule runs its package's `__init__` first, so `lazy_package` registers the
package without running it: a name the `__init__` would have imported (`from .x import Name`)
is imported on first access from the submodule it names, a submodule as usual, and any other
name (`__all__`, a star import) runs the whole `__init__` once, so nothing of the package is
lost, only loaded when used. (Powertools did the same upstream for its parser's envelopes,
aws-powertools/powertools-lambda-python#8405; these two packages have no such switch.)
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

# The packages made lazy by `import tickets` (tickets/__init__.py), before anything imports them.
# (The event_handler's openapi package imports its OpenAPIMerge, for merging several functions' documents.)
LAZY_PACKAGES = ("aws_lambda_powertools.event_handler", "aws_lambda_powertools.event_handler.openapi",
                 "aws_lambda_powertools.utilities.data_classes")


def _names_imported(package: str, init_source: str) -> dict[str, tuple[str, str]]:
    """What the `__init__`'s top-level `from ... import` statements bind: name -> (module, name there)."""
    names: dict[str, tuple[str, str]] = {}
    for node in ast.parse(init_source).body:
        if isinstance(node, ast.ImportFrom) and node.level <= 1 and node.module:
            module = node.module if node.level == 0 else f"{package}.{node.module}"
            for alias in node.names:
                names[alias.asname or alias.name] = (module, alias.name)
    return names


def lazy_package(package: str) -> ModuleType:
    """Registers `package` in sys.modules with its `__init__` deferred (see the module's docstring);
    a package imported already is left as it is."""
    if package in sys.modules:
        return sys.modules[package]
    spec = importlib.util.find_spec(package)  # imports the parent packages, as an import would
    if spec is None or spec.origin is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"{package} is not a package with an __init__")
    module = importlib.util.module_from_spec(spec)
    loader, names = spec.loader, _names_imported(package, Path(spec.origin).read_text(encoding="utf-8"))
    whole: list[bool] = []

    def __getattr__(name: str) -> Any:  # noqa: N807 - a module's attribute hook (PEP 562)
        if name in names:
            source, attribute = names[name]
            value = getattr(importlib.import_module(source), attribute)
        elif importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        elif not whole:
            whole.append(True)
            loader.exec_module(module)  # the whole __init__, once: its submodules already loaded are reused
            return getattr(module, name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(module, name, value)
        return value

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[package] = module
    parent, _, child = package.rpartition(".")
    setattr(sys.modules[parent], child, module)
    return module
