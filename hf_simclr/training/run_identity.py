"""What makes a pretraining run the run it is, so that a resume goes on with the same run or says that it would not.

Each checkpoint records the run's *definition* (:func:`definition`): the settings whose change would make the steps
after the resume part of another run.

* The **architecture** (:data:`ARCHITECTURE`): the checkpoint's weights fit only the model they were trained in, so
  it never changes on resume.
* The **data and what is drawn from it** (:data:`DEFINING`): the dataset and its columns and splits, the seed (data
  order, views, initialisation), the global batch (which images each step sees; each epoch's order is split into
  global batches), the augmentation and the image size, and the evaluation whose untrained baseline the run
  recorded (evaluation split, label column, resolution). Changing one is refused unless ``--allow_run_changes`` asks
  for it; the run then records the change (``results.json``, the model card).

Everything else may change on resume and keeps the same run: the process count and per-device batch with the same
global batch (the data order and views do not depend on them), the learning rate and its scaling, warm-up, length,
weight decay, temperature, gradient caching, logging, checkpoints, the kNN monitor's cadence, workers, timeouts,
trackers and the Hub.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ..errors import UsageError
from ..hub.records import is_local_path
from .arguments import PretrainArguments
from .components import augment_recipe

ARCHITECTURE = (
    "backbone",
    "backbone_kwargs",
    "cifar_stem",
    "projection_dim",
    "projection_hidden_dim",
    "projection_layers",
    "projection_batch_norm",
)
DEFINING = (
    "dataset",
    "dataset_config",
    "train_split",
    "image_column",
    "streaming",
    "label_column",
    "eval_split",
    "seed",
    "global_batch_size",
    "image_size",
    "eval_image_size",
    "augment",
    "min_crop_scale",
    "jitter_strength",
)


def definition(args: PretrainArguments, num_processes: int) -> dict[str, Any]:
    """The settings that define the run of ``args`` on ``num_processes`` processes (presets resolved, local dataset
    paths made absolute, the augmentation's crop scale and colour strength as the recipe applies them), and how the
    global batch is made up."""
    recipe = augment_recipe(args)
    values = {name: getattr(args, name) for name in (*ARCHITECTURE, *DEFINING) if hasattr(args, name)}
    if args.dataset is not None and is_local_path(args.dataset):
        values["dataset"] = os.path.abspath(os.path.expanduser(args.dataset))
    values.update(min_crop_scale=recipe.crop_scale[0], jitter_strength=recipe.jitter_strength)
    values.update(global_batch_size=args.per_device_batch_size * num_processes)
    values.update(per_device_batch_size=args.per_device_batch_size, num_processes=num_processes)
    return json.loads(json.dumps(values))  # as the checkpoint will hold it: lists for tuples, string keys


def changed_settings(
    saved: Mapping[str, Any], current: Mapping[str, Any], where: str, allow: bool
) -> dict[str, list[Any]]:
    """The defining settings that differ between the ``saved`` definition and the ``current`` one, as
    ``{name: [saved value, current value]}``, when the run may go on with them.

    Raises :class:`UsageError` (one line starting with ``where``) for another architecture, and for any other change
    unless ``allow`` (``--allow_run_changes``).
    """
    model = {name: [saved.get(name), current[name]] for name in ARCHITECTURE if saved.get(name) != current[name]}
    if model:
        raise UsageError(
            f"{where} holds another model: {_describe(model, saved, current)}; its weights fit only its own "
            "architecture, which cannot change on resume, not even with --allow_run_changes: resume with its "
            "settings, or start afresh with --overwrite_output_dir or another --output_dir"
        )
    changes = {name: [saved.get(name), current[name]] for name in DEFINING if saved.get(name) != current[name]}
    if changes and not allow:
        raise UsageError(
            f"{where} belongs to another run: {_describe(changes, saved, current)}; resume with that run's settings, "
            "or pass --allow_run_changes to go on with these (results.json and the model card then record both)"
        )
    return changes


def _describe(changes: Mapping[str, list[Any]], saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    parts = []
    for name, (before, after) in changes.items():
        if name == "global_batch_size":
            parts.append(f"a global batch of {after} = {_made_of(current)} (it has {before} = {_made_of(saved)})")
        else:
            parts.append(f"--{name} {_shown(after)} (it has {_shown(before)})")
    return ", ".join(parts)


def _made_of(definition: Mapping[str, Any]) -> str:
    processes = definition.get("num_processes", "?")
    return f"{processes} process{'es' * (processes != 1)} x {definition.get('per_device_batch_size', '?')}"


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def change_line(changes: Mapping[str, list[Any]]) -> str:
    """``dataset a.parquet → b.parquet, seed 42 → 7``."""
    return ", ".join(f"{name} {_shown(before)} → {_shown(after)}" for name, (before, after) in changes.items())


__all__ = ["ARCHITECTURE", "DEFINING", "change_line", "changed_settings", "definition"]
