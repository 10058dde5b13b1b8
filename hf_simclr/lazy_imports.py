"""Package attributes that import their module on first use (PEP 562), so that importing a package stays cheap.

The command-line scripts import ``hf_simclr`` only to read their arguments before any work starts: ``--help`` and a
mistyped flag must answer at once, not after torch, timm, transformers and datasets have loaded (several seconds).
Each package therefore names what it exports and where it lives; ``from hf_simclr.data import load_image_dataset``
then imports ``hf_simclr.data.sources`` at that moment, and submodules stay reachable as attributes.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any


class LazyPackage(ModuleType):
    """A package whose exports keep their place when a submodule of the same name is imported (importlib sets the
    submodule as an attribute of its package): ``hf_simclr.evaluation.linear_probe`` stays the function, as after an
    eager ``from .linear_probe import linear_probe``. The submodule itself stays importable by its full name."""

    lazy_exports: Mapping[str, str] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and self.lazy_exports.get(name) == f".{name}" and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` of ``package``, whose ``exports`` map relative module names (``".sources"``)
    to the names they define."""
    where = {name: module for module, names in exports.items() for name in names}
    sys.modules[package].__class__ = LazyPackage
    sys.modules[package].lazy_exports = where

    def __getattr__(name: str) -> Any:
        if name in where:
            value = getattr(importlib.import_module(where[name], package), name)
        else:
            try:  # a submodule used as an attribute, as after an eager `from .x import ...`
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as error:
                if error.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__, sorted(where)


__all__ = ["LazyPackage", "lazy_exports"]
