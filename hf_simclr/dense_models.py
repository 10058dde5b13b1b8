"""SimCLR weights in transformers' dense-prediction models (UperNet, DETR, Mask2Former, ...).

Those models build their backbone from ``config.backbone_config`` with random weights (transformers 5 loads no
pretrained backbone by itself). With a :class:`~hf_simclr.SimCLRConfig` there, the backbone is a
:class:`~hf_simclr.SimCLRBackbone`, and :func:`load_simclr_backbone` copies a SimCLR checkpoint's encoder into it::

    backbone = SimCLRBackbone.from_pretrained("org/simclr-r50", out_features=["stage1", "stage2", "stage3", "stage4"])
    model = UperNetForSemanticSegmentation(UperNetConfig(backbone_config=backbone.config, num_labels=21))
    load_simclr_backbone(model, backbone)

Some models change the backbone after building it (DETR replaces its BatchNorms with frozen ones, which hold the same
tensors): the copy goes through ``load_state_dict``, so it fits them too.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from .modeling_simclr import SimCLRBackbone

# Config fields that shape the encoder's computation; weights of another setting could load and compute something else
ARCHITECTURE_FIELDS = (
    "backbone",
    "backbone_kwargs",
    "width_multiplier",
    "sk_ratio",
    "tf_same_stem_pool",
    "cifar_stem",
    "batch_norm_eps",
)


def find_simclr_backbone(model: nn.Module) -> SimCLRBackbone:
    """The one :class:`SimCLRBackbone` inside ``model`` (``model`` itself if it is one)."""
    found = [module for module in model.modules() if isinstance(module, SimCLRBackbone)]
    if len(found) != 1:
        raise ValueError(
            f"{type(model).__name__} holds {len(found)} SimCLR backbones, not one: build it with "
            "backbone_config=<a SimCLRConfig> (e.g. SimCLRBackbone.from_pretrained(...).config)"
        )
    return found[0]


def load_simclr_backbone(
    model: nn.Module, source: str | os.PathLike | SimCLRBackbone, **from_pretrained_kwargs: Any
) -> SimCLRBackbone:
    """Copy the encoder weights of ``source`` (a SimCLR model folder or Hub id, or a loaded :class:`SimCLRBackbone`)
    into the SimCLR backbone of ``model``; returns that backbone.

    ``from_pretrained_kwargs`` go to :meth:`SimCLRBackbone.from_pretrained` (``revision``, ``token``, ...). The
    checkpoint must be of the encoder the model was built with: another architecture is a ``ValueError`` naming the
    first field that differs, never a partial copy.
    """
    target = find_simclr_backbone(model)
    if not isinstance(source, SimCLRBackbone):
        source = SimCLRBackbone.from_pretrained(source, **from_pretrained_kwargs)
    for field in ARCHITECTURE_FIELDS:
        ours, theirs = getattr(target.config, field, None), getattr(source.config, field, None)
        if ours != theirs:
            raise ValueError(
                f"the SimCLR checkpoint has {field}={theirs!r} but the backbone of {type(model).__name__} was built "
                f"with {field}={ours!r}: build the model with the checkpoint's config as backbone_config"
            )
    try:
        target.load_state_dict(source.state_dict())
    except RuntimeError as error:
        first = str(error).strip().splitlines()[1:2] or [str(error)]
        raise ValueError(
            f"the SimCLR checkpoint's encoder does not fit the backbone of {type(model).__name__} "
            f"({first[0].strip()}): build the model with the checkpoint's config as backbone_config"
        ) from error
    return target


__all__ = ["ARCHITECTURE_FIELDS", "find_simclr_backbone", "load_simclr_backbone"]
