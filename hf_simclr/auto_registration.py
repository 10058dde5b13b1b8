"""``import hf_simclr`` registers SimCLR with transformers' Auto classes without importing transformers or torch.

``AutoConfig`` lives in ``transformers.models.auto.configuration_auto`` and ``AutoModel`` /
``AutoModelForImageClassification`` / ``AutoBackbone`` in ``transformers.models.auto.modeling_auto``. A module already
imported gets the SimCLR classes at once; one not imported yet gets them right after its first import, before the
importer sees it. So ``import hf_simclr; AutoModel.from_pretrained(<a SimCLR folder>)`` works in either order, while
importing the package (and each script's ``--help``) does not pay for torch.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any


def register_config() -> None:
    from transformers import AutoConfig

    from .configuration_simclr import SimCLRConfig

    AutoConfig.register(SimCLRConfig.model_type, SimCLRConfig, exist_ok=True)


def register_models() -> None:
    from transformers import AutoBackbone, AutoModel, AutoModelForImageClassification

    from .configuration_simclr import SimCLRConfig
    from .modeling_simclr import SimCLRBackbone, SimCLRForImageClassification, SimCLRModel

    AutoModel.register(SimCLRConfig, SimCLRModel, exist_ok=True)
    AutoBackbone.register(SimCLRConfig, SimCLRBackbone, exist_ok=True)
    AutoModelForImageClassification.register(SimCLRConfig, SimCLRForImageClassification, exist_ok=True)


# Auto module -> (the SimCLR module whose classes it gets, the registration)
REGISTRATIONS: dict[str, tuple[str, Callable[[], None]]] = {
    "transformers.models.auto.configuration_auto": ("hf_simclr.configuration_simclr", register_config),
    "transformers.models.auto.modeling_auto": ("hf_simclr.modeling_simclr", register_models),
}


def _importing(name: str, done: str | None = None) -> bool:
    """Whether module ``name`` is being imported (``done`` has just finished, though importlib has not said so)."""
    module = sys.modules.get(name)
    return name != done and getattr(getattr(module, "__spec__", None), "_initializing", False) is True


def _imported(name: str, done: str | None = None) -> bool:
    return name == done or (name in sys.modules and not _importing(name))


class _CallAfterLoading(importlib.abc.Loader):
    """The module's own loader, then ``after``; everything else (source for tracebacks, ...) is delegated."""

    def __init__(self, loader: importlib.abc.Loader, after: Callable[[], None]) -> None:
        self.loader, self.after = loader, after

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        self.after()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Watches the Auto modules and the SimCLR modules. Each registration runs once its Auto module is imported and
    its SimCLR module is not half-way through its own import (transformers imports Auto modules while
    ``modeling_simclr`` imports transformers). Leaves ``sys.meta_path`` when every registration is done."""

    def __init__(self, pending: dict[str, tuple[str, Callable[[], None]]]) -> None:
        self.pending = pending

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> Any:
        if not any(fullname in (auto, own) for auto, (own, _) in self.pending.items()):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _CallAfterLoading(spec.loader, lambda: self.register_ready(fullname))
        return spec

    def register_ready(self, done: str | None = None) -> None:
        for auto, (own, register) in list(self.pending.items()):
            if auto in self.pending and _imported(auto, done) and not _importing(own, done):
                del self.pending[auto]
                register()
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)


def register_with_auto_classes() -> None:
    """Register SimCLR with each Auto module now if it is imported, else as soon as it is."""
    if any(isinstance(finder, _RegisterOnImport) for finder in sys.meta_path):
        return
    finder = _RegisterOnImport(dict(REGISTRATIONS))
    sys.meta_path.insert(0, finder)
    finder.register_ready()


__all__ = ["register_with_auto_classes"]
