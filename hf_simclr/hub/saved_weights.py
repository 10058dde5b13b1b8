"""What the weights of a saved folder must be before they go up: finite floating-point numbers and, in a SimCLR
folder, exactly the tensors its config.json describes (a folder that loads as garbage, or not at all, stays local).

Only the safetensors headers are read to compare names, shapes and dtypes; the values are then read one tensor at a
time to find NaN and infinities, so a push of a 3 GB model never holds more than its largest tensor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["check_saved_weights"]


def _stored(files: Sequence[Path]) -> dict[str, tuple[Path, tuple[int, ...], str]]:
    from safetensors import safe_open

    stored = {}
    for path in files:
        with safe_open(path, framework="pt") as weights:
            for key in weights.keys():
                tensor = weights.get_slice(key)
                stored[key] = (path, tuple(tensor.get_shape()), tensor.get_dtype())
    return stored


def _expected_simclr(config: Mapping[str, Any]) -> tuple[str, dict[str, tuple[tuple[int, ...], bool]], list[str]]:
    """``(class name, {key: (shape, floating)}, patterns of keys it ignores)`` of the model config.json describes,
    built on the meta device (no memory, no weights)."""
    import torch

    from ..configuration_simclr import SimCLRConfig
    from ..modeling_simclr import SimCLRForImageClassification, SimCLRModel

    simclr_config = SimCLRConfig.from_dict(dict(config))
    classes = {cls.__name__: cls for cls in (SimCLRModel, SimCLRForImageClassification)}
    cls = classes.get(next(iter(simclr_config.architectures or []), ""), SimCLRModel)
    with torch.device("meta"):
        model = cls(simclr_config)
    expected = {key: (tuple(t.shape), t.is_floating_point()) for key, t in model.state_dict().items()}
    return cls.__name__, expected, list(cls._keys_to_ignore_on_load_unexpected or [])


def check_saved_weights(files: Sequence[Path], config: Mapping[str, Any], kind: str = "simclr") -> None:
    """Raise ``ValueError`` with one line naming the first tensor that is not a finite floating-point tensor, or, for
    ``kind`` "simclr", that config.json does not describe (missing, of another shape, or left over).

    ``files`` are the folder's complete safetensors files (see ``hf_simclr.hub.push.validate_model_folder``).
    """
    import torch
    from safetensors import safe_open

    from ..modeling_simclr import FLOAT_DTYPES

    stored = _stored(files)
    if kind == "simclr":
        name, expected, ignored = _expected_simclr(config)
        missing = sorted(key for key in expected if key not in stored)
        if missing:
            raise ValueError(
                f"the weights lack {len(missing)} tensors of the {name} config.json describes (e.g. {missing[0]})"
            )
        for key, (shape, _) in expected.items():
            if stored[key][1] != shape:
                raise ValueError(
                    f"the weight {key} has shape {stored[key][1]}, the {name} config.json describes {shape}"
                )
        extra = sorted(k for k in stored if k not in expected and not any(re.search(p, k) for p in ignored))
        if extra:
            raise ValueError(f"{len(extra)} weights are not part of the {name} config.json describes (e.g. {extra[0]})")
    for key, (_, _, dtype) in stored.items():
        if dtype not in FLOAT_DTYPES and not key.endswith("num_batches_tracked"):
            raise ValueError(
                f"the weight {key} is stored as {dtype}, not as floating point ({', '.join(FLOAT_DTYPES)})"
            )
    for path in sorted({path for path, _, _ in stored.values()}):
        with safe_open(path, framework="pt") as weights:
            for key in weights.keys():
                tensor = weights.get_tensor(key)
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    raise ValueError(f"the weight {key} holds NaN or infinite values, so every output would be NaN")
