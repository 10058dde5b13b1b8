"""What a run writes next to its model, in one place: file names, log rows, metric keys and their names, dataset names,
and what of it may be published.

A pretraining run's folder (``--output_dir``)::

    config.json, model.safetensors, *.py, preprocessor_config.json   # the model (hf_simclr.hub.export.save_model)
    README.md                                                        # the model card (hf_simclr.hub.card)
    training_args.json    # every argument of the run, presets resolved
    train_log.jsonl       # one JSON object a line (see below); finetune_log.jsonl for fine-tuning,
                          # segmentation_log.jsonl for segmentation
    results.json          # the final metrics of the run; written last, so it marks the run finished
    eval_results.json     # later evaluations: {"results": [entry, ...]}
    checkpoints/step_N/   # resumable training state
    .hf_simclr.lock       # held by the run writing to the folder (hf_simclr.hub.output_lock)

``results.json`` also names the data (``dataset``: the name shown, ``dataset_id``: its Hub id or null, ``eval_split``)
and the size of the representation (``feature_dim``), so that the card can be written again from the folder alone; a
run resumed with other defining settings (``--allow_run_changes``) lists them in ``run_changes``:
``[{"step": 2, "changes": {"dataset": ["a.parquet", "b.parquet"], "seed": [42, 7]}}]``.

Nothing published names a local path: a local dataset or model is named by its folder or file name (never as a Hub
id), and ``training_args.json`` is pushed with its paths reduced to names (:func:`public_training_args`).

A log row holds ``step`` (optimizer steps, required), ``epoch`` (float) and any metrics; rows of different kinds
interleave::

    {"step": 100, "epoch": 2.0, "loss": 5.31, "lr": 0.29, "views_per_s": 812.0, ...}  # every --log_every steps
    {"step": 250, "epoch": 5.0, "knn_top1_k20": 0.71, "knn_top1_k200": 0.69}         # after a kNN evaluation

Accuracies are fractions in [0, 1] under the keys of ``METRIC_NAMES``; ``<key>_random_init`` is the same evaluation of
the encoder before training. An ``eval_results.json`` entry is one evaluation of the model on one dataset::

    {"evaluation": "linear_eval", "dataset": "Fashion-MNIST (embedded subset)", "split": "test",
     "metrics": {"knn_top1_k20": 0.81, "linear_top1": 0.84, ...}, "details": {...}, "date": "2025-01-01T00:00:00+00:00"}

A new entry replaces the one with the same evaluation, dataset and split; the others are kept.

Files are written whole or not at all: JSON files through a temporary file renamed into place, and a write that fails
on a full disk removes what it had written and becomes a :class:`hf_simclr.errors.RunFailure` saying so
(:func:`writing`).
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import RunFailure

TRAIN_LOG = "train_log.jsonl"
FINETUNE_LOG = "finetune_log.jsonl"
# a distillation's folder (scripts/distill.py): its arguments (paths reduced to names), log and final results, which
# are written last and so mark it finished
DISTILL_ARGS = "distill_args.json"
DISTILL_LOG = "distill_log.jsonl"
DISTILL_RESULTS = "distill_results.json"
SEGMENTATION_LOG = "segmentation_log.jsonl"
TRAINING_ARGS = "training_args.json"
RESULTS = "results.json"
EVAL_RESULTS = "eval_results.json"
CHECKPOINTS = "checkpoints"
MODEL_CARD = "README.md"
NEIGHBOURS_IMAGE = "nearest_neighbours.png"  # held-out images and their nearest training images (linear_eval.py)

RANDOM_INIT_SUFFIX = "_random_init"
# The metric keys hf_simclr reports and the names shown for them on model cards; other keys are shown as given.
METRIC_NAMES = {
    "knn_top1": "kNN top-1 accuracy",
    "knn_top1_k20": "kNN top-1 accuracy (k=20)",
    "knn_top1_k200": "kNN top-1 accuracy (k=200)",
    "knn_top5": "kNN top-5 accuracy",
    "linear_top1": "Linear probe top-1 accuracy",
    "linear_top5": "Linear probe top-5 accuracy",
    "finetune_top1": "Top-1 accuracy",
    "finetune_top5": "Top-5 accuracy",
    "distill_top1": "Top-1 accuracy",
    "distill_top5": "Top-5 accuracy",
    "teacher_agreement": "Top-1 agreement with the teacher",
    "mean_iou": "Mean IoU",
    "pixel_accuracy": "Pixel accuracy",
}

DEFAULT_DATASET_NAME = "Fashion-MNIST (embedded subset)"
_GLOB_CHARACTERS = set("*?[")


def metric_name(key: str) -> str:
    """The name a model card shows for a metric key (the key itself if hf_simclr does not report it)."""
    return METRIC_NAMES.get(key, key)


def is_local_path(value: str) -> bool:
    """Whether a ``--dataset`` or ``--model`` value names something on this machine rather than a Hub id.

    It does if it exists, starts with ``.``, ``/`` or ``~``, holds a wildcard, or sits in a folder that exists (so
    ``outputs/simlcr`` is a mistyped folder, while ``org/name`` stays a Hub id unless ``./org`` exists).
    """
    if value.startswith((".", "/", "~")) or _GLOB_CHARACTERS & set(value) or Path(value).expanduser().exists():
        return True
    parent = Path(value).parent
    return parent != Path(".") and parent.is_dir()


def local_name(path: str | os.PathLike) -> str:
    """The last component of a local path that holds no wildcard: ``data/*.parquet`` -> ``data``."""
    parts = [part for part in Path(path).expanduser().resolve().parts if not _GLOB_CHARACTERS & set(part)]
    return Path(*parts).name if parts else str(path)


def dataset_names(dataset: str | None) -> tuple[str, str | None]:
    """``(name shown on cards and in results, Hub dataset id or None)`` for a ``--dataset`` value.

    A local folder or file is named by its last path component and is never a Hub id; ``None`` is the embedded data.
    """
    if dataset is None:
        return DEFAULT_DATASET_NAME, None
    if is_local_path(dataset):  # a local folder or file: its name, not a path of this machine
        return local_name(dataset), None
    return dataset, dataset


def public_model_name(model: str) -> str:
    """How records name a ``--model``: a Hub id as given, a local folder by its name."""
    return local_name(model) if is_local_path(model) else model


def public_training_args(
    args: Mapping[str, Any], dataset: tuple[str, str | None], output_name: str | None = None
) -> dict[str, Any]:
    """``training_args.json`` as it may be published: the same arguments with every path reduced to a name.

    ``dataset`` is ``(name, Hub id or None)`` as recorded in ``results.json`` (see :func:`dataset_names`): a local
    dataset becomes its name. ``output_dir`` becomes ``output_name`` (default: its folder name) and a checkpoint
    folder given to ``resume_from_checkpoint`` its own name.
    """
    public = dict(args)
    name, dataset_id = dataset
    if public.get("dataset") is not None and public["dataset"] != dataset_id:
        public["dataset"] = name
    if isinstance(public.get("output_dir"), str):
        public["output_dir"] = output_name or local_name(public["output_dir"])
    resume = public.get("resume_from_checkpoint")
    if isinstance(resume, str) and resume != "latest":
        public["resume_from_checkpoint"] = Path(resume).name
    return public


def public_run_changes(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Settings changed on resume (``{"step": N, "changes": {name: [before, after]}}`` each) as they may be published:
    datasets named as :func:`dataset_names` names them."""
    public = []
    for entry in changes:
        named = {
            name: [dataset_names(value)[0] for value in values] if name == "dataset" else list(values)
            for name, values in entry["changes"].items()
        }
        public.append({"step": entry["step"], "changes": named})
    return public


def finished_run(output_dir: str | Path) -> dict[str, Any] | None:
    """The results of the pretraining run that finished in ``output_dir``, or None if none did.

    ``results.json`` is written after the model, its card and its exports and removed when a new run starts there,
    so it marks a finished run.
    """
    try:
        results = json.loads((Path(output_dir) / RESULTS).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return results if isinstance(results, dict) else None


class RunLog:
    """A ``*.jsonl`` log in a run's folder: one row (a JSON object) appended per call, flushed at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def write(self, step: int, epoch: float | None = None, **metrics: Any) -> None:
        row = {"step": step} if epoch is None else {"step": step, "epoch": epoch}
        with open(self.path, "a") as f:
            f.write(json.dumps({**row, **metrics}) + "\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def drop_rows_after(self, step: int) -> None:
        """Keep only the rows up to ``step``: a run resumed from there logs the later steps again."""
        if self.path.exists():
            kept = [row for row in read_train_log(self.path) if row["step"] <= step]
            self.path.write_text("".join(json.dumps(row) + "\n" for row in kept))


def read_eval_results(output_dir: str | Path) -> list[dict[str, Any]]:
    """The entries of ``output_dir/eval_results.json`` (none if it is missing or unreadable)."""
    try:
        entries = json.loads((Path(output_dir) / EVAL_RESULTS).read_text()).get("results", [])
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, AttributeError):
        return []
    return [entry for entry in entries if isinstance(entry, dict) and isinstance(entry.get("metrics"), dict)]


def read_train_log(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``train_log.jsonl`` (see the module docstring); unparsable lines (e.g. a line cut short by an
    interrupted run) and rows without ``step`` are skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
            rows.append(row)
    return rows


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NEARLY_FULL_BYTES = 1 << 20


def is_disk_full(error: BaseException, folder: str | Path) -> bool:
    """Whether ``error``, raised while writing into ``folder``, comes from a full disk (or quota): an ``OSError``
    saying so anywhere in its chain or, for writers that do not say (``torch.save`` raises a bare ``RuntimeError``),
    less than 1 MiB left on the folder's filesystem. Call it before removing what the failed write left."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_FULL_ERRNOS:
            return True
        seen = seen.__cause__ or seen.__context__
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < _NEARLY_FULL_BYTES


@contextmanager
def writing(folder: str | Path, what: str, *, partial: str | Path | None = None, then: str = "") -> Iterator[None]:
    """Write ``what`` into ``folder`` in the block: if it fails, ``partial`` (a file or folder being written) is
    removed, and a full disk becomes a :class:`RunFailure` whose message ends with ``then`` (how to go on)."""
    try:
        yield
    except Exception as error:
        full = is_disk_full(error, folder)
        if partial is not None:
            partial = Path(partial)
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink(missing_ok=True)
        if full:
            raise RunFailure(
                f"no space left on device while writing {what} to {folder}: free some space or choose another "
                f"folder{'; ' + then if then else ''}"
            ) from error
        raise


def write_json(path: str | Path, value: Any) -> Path:
    """``value`` as indented JSON (``training_args.json``, ``results.json``), replacing the file whole."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    with writing(path.parent, path.name, partial=partial):
        partial.write_text(json.dumps(value, indent=2) + "\n")
        partial.replace(path)
    return path


def write_eval_results(
    output_dir: str | Path,
    evaluation: str,
    dataset: str,
    metrics: Mapping[str, float],
    *,
    split: str = "test",
    dataset_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Path:
    """Merge one entry (see the module docstring) into ``output_dir/eval_results.json``; returns the file.

    ``dataset`` is the name shown (see :func:`dataset_names`), ``dataset_id`` its Hub id if it has one.
    """
    path = Path(output_dir) / EVAL_RESULTS
    entries = read_eval_results(output_dir)  # a hand-edited or truncated file must not block writing new results
    key = (evaluation, dataset, split)
    entries = [e for e in entries if (e.get("evaluation"), e.get("dataset"), e.get("split")) != key]
    entries.append(
        {
            "evaluation": evaluation,
            "dataset": dataset,
            "dataset_id": dataset_id,
            "split": split,
            "metrics": dict(metrics),
            "details": dict(details or {}),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json(path, {"results": entries})


__all__ = [
    "CHECKPOINTS",
    "DEFAULT_DATASET_NAME",
    "DISTILL_ARGS",
    "DISTILL_LOG",
    "DISTILL_RESULTS",
    "DISK_FULL_ERRNOS",
    "EVAL_RESULTS",
    "FINETUNE_LOG",
    "METRIC_NAMES",
    "MODEL_CARD",
    "RANDOM_INIT_SUFFIX",
    "RESULTS",
    "SEGMENTATION_LOG",
    "TRAINING_ARGS",
    "TRAIN_LOG",
    "RunLog",
    "dataset_names",
    "is_disk_full",
    "finished_run",
    "is_local_path",
    "local_name",
    "metric_name",
    "public_model_name",
    "public_run_changes",
    "public_training_args",
    "read_eval_results",
    "read_train_log",
    "write_eval_results",
    "write_json",
    "writing",
]
