"""A distillation's output folder: what it may hold when a run starts, and what the run writes there, in order.

::

    config.json, model.safetensors, *.py, preprocessor_config.json   # the student (hf_simclr.hub.export.save_model)
    README.md              # its card: the teacher, the recipe, the results (hf_simclr.distillation.card)
    distill_args.json      # the arguments, models and data named without local paths (pushed as written)
    distill_log.jsonl      # the loss and learning rate every --log_every steps
    eval_results.json      # the held-out comparison with the teacher (hf_simclr.hub.records)
    distill_curves.png     # the loss curve (with the plots extra)
    distill_results.json   # the final results; written last, so it marks the run finished
    checkpoints/step_N/    # resumable state (hf_simclr.training.checkpoint); never pushed
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import UsageError
from ..hub import records
from ..hub.export import save_model
from ..modeling_simclr import SimCLRForImageClassification
from ..training import console
from ..training.checkpoint import checkpoint_dirs
from .arguments import DistillArguments
from .card import write_distillation_card

CURVES = "distill_curves.png"


def check_output_dir(args: DistillArguments) -> dict[str, Any] | None:
    """The results of the finished distillation ``--output_dir`` holds when ``--resume_from_checkpoint latest`` asks
    to go on with it; None to go on; a :class:`UsageError` for a folder holding another run or model."""
    output_dir = Path(args.output_dir)
    if args.overwrite_output_dir:
        return None
    try:
        finished = json.loads((output_dir / records.DISTILL_RESULTS).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        finished = None
    if finished is not None:
        if args.resume_from_checkpoint == "latest":
            return finished
        raise UsageError(
            f"--output_dir {output_dir} holds a finished distillation; pass --overwrite_output_dir to replace it, or "
            "another --output_dir"
        )
    if args.resume_from_checkpoint:
        return None
    checkpoints = checkpoint_dirs(output_dir / records.CHECKPOINTS)
    if checkpoints:
        raise UsageError(
            f"--output_dir {output_dir} holds an unfinished distillation (last checkpoint: {checkpoints[-1].name}); "
            "pass --resume_from_checkpoint latest to continue it, --overwrite_output_dir to replace it, or another "
            "--output_dir"
        )
    if (output_dir / "config.json").is_file() or (output_dir / records.DISTILL_ARGS).is_file():
        raise UsageError(
            f"--output_dir {output_dir} holds another model or run; pass --overwrite_output_dir to replace it, or "
            "another --output_dir"
        )
    return None


def start_records(args: DistillArguments, step: int) -> None:
    """``distill_args.json``, and no results until the run finishes; a fresh run (``step`` 0) also removes what a run
    it replaces left (log, results, checkpoints), a resumed one the log rows written after its checkpoint."""
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(output_dir / records.DISTILL_ARGS, public_args(args))
    (output_dir / records.DISTILL_RESULTS).unlink(missing_ok=True)
    log = records.RunLog(output_dir / records.DISTILL_LOG)
    if step == 0:
        log.clear()
        (output_dir / records.EVAL_RESULTS).unlink(missing_ok=True)
        shutil.rmtree(output_dir / records.CHECKPOINTS, ignore_errors=True)
    else:
        log.drop_rows_after(step)


def public_args(args: DistillArguments) -> dict[str, Any]:
    """The arguments as they may be published: models and data by name, never a path of this machine."""
    values = asdict(args)
    values.update(teacher=records.public_model_name(args.teacher), student=records.public_model_name(args.student))
    values["dataset"] = records.dataset_names(args.dataset)[0] if args.dataset else None
    values["output_dir"] = records.local_name(args.output_dir)
    if args.resume_from_checkpoint not in (None, "latest"):
        values["resume_from_checkpoint"] = Path(args.resume_from_checkpoint).name
    return values


def save_student(
    args: DistillArguments,
    trained: nn.Module,
    recipe: dict[str, Any],
    metrics: dict[str, float],
    split: str | None,
    results: dict[str, Any],
) -> None:
    """The student (plain BatchNorm, eval mode), its held-out results (``split``: none without a held-out split),
    card and curves, then ``distill_results.json``; the push, if asked; the lines that end the run."""
    output_dir = Path(args.output_dir)
    student = SimCLRForImageClassification(trained.config)
    student.load_state_dict(trained.state_dict())
    then = "the last checkpoint is complete: go on with --resume_from_checkpoint latest"
    with records.writing(output_dir, "the student", then=then):
        save_model(student.eval(), output_dir)
    dataset_name, dataset_id = records.dataset_names(args.dataset)
    if split is not None:
        records.write_eval_results(
            output_dir, "distill", dataset_name, metrics, split=split, dataset_id=dataset_id, details=recipe
        )
    write_distillation_card(output_dir, recipe, dataset=dataset_name)
    plot_curves(output_dir)
    records.write_json(output_dir / records.DISTILL_RESULTS, results)
    lines = [f"done: the student is in {output_dir}"]
    if args.push_to_hub:
        from ..hub.push import push_folder_to_hub, pushed_line

        message = "Upload distilled SimCLR student"
        url = push_folder_to_hub(output_dir, args.hub_model_id, private=args.hub_private, commit_message=message)
        lines.append(pushed_line(url))
    else:
        lines.append(f"push:     python scripts/push_to_hub.py {output_dir} <org>/<name>")
    console.say("\n".join(lines))


def plot_curves(output_dir: Path) -> None:
    from ..evaluation.plots import missing_plot_packages, plot_training_curves

    if missing_plot_packages(tsne=False):
        console.say(f"no {CURVES}: pip install 'hf-simclr[plots]' to draw it")
        return
    plot_training_curves(output_dir / records.DISTILL_LOG, output_dir / CURVES, loss_title="Distillation loss")


__all__ = ["check_output_dir", "public_args", "save_student", "start_records"]
