"""`scripts/distill.py`: SimCLRv2's third step. A fine-tuned teacher, frozen, gives each training image its softened
class distribution; a student (the same network, or a smaller one) learns it from crops of the images, with no label
unless ``--distillation_weight`` below 1 mixes in the labelled ones.

One loop for one CPU, one GPU or many processes (Accelerate): every process draws its own disjoint batches of a seeded
per-epoch order, BatchNorm is synchronised across GPUs, the student is LARS-trained with warm-up and cosine decay.
Checkpoints are :mod:`hf_simclr.training.checkpoint`'s (safetensors and JSON, verified, resumable mid-epoch); the
output folder is locked for the run; Ctrl-C and a scheduler's signal stop it as they stop pretraining. The student is
saved as a ``SimCLRForImageClassification`` folder (``pipeline("image-classification")`` loads it) with its held-out
results against the teacher, a card naming the teacher and the recipe, and ``distill_results.json``, written last.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import EpochBatchSampler
from ..errors import NonFiniteLossError, UsageError
from ..evaluation.finetune import with_sync_batch_norm
from ..hub import records
from ..hub.output_lock import OutputDirLock
from ..modeling_simclr import SimCLRForImageClassification, build_image_processor
from ..optim import build_lars, build_schedule, scaled_learning_rate
from ..training import console
from ..training.checkpoint import (
    Resumable,
    TrainState,
    choose_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from ..training.components import loader_kwargs, num_workers
from ..training.distributed import main_process_decides, process_group_kwargs
from .arguments import DistillArguments
from .data import DistillationViews, collate_distillation, normaliser
from .evaluate import HeldOut, compare, predict, teacher_view
from .loss import distillation_loss, label_loss
from .models import Teacher, build_student, default_temperature, load_teacher, same_architecture
from .run_folder import check_output_dir, save_student, start_records
from .training_data import TrainingImages, load_training_images


@dataclass
class Run:
    """Everything the loop works with; built once by :func:`distill`."""

    args: DistillArguments
    accelerator: Accelerator
    teacher: Teacher
    images: TrainingImages
    student: torch.nn.Module  # prepared: DDP-wrapped on several processes
    optimizer: Optimizer
    scheduler: LambdaLR
    loader: DataLoader
    sampler: EpochBatchSampler
    views: DistillationViews
    temperature: float
    self_distillation: bool
    learning_rate: float
    steps_per_epoch: int
    total_steps: int
    held_out: HeldOut | None
    state: TrainState = field(default_factory=TrainState)
    checkpointed_step: int = 0
    last_loss: float | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.args.output_dir)

    @property
    def checkpoint_root(self) -> Path:
        return self.output_dir / records.CHECKPOINTS

    @property
    def log(self) -> records.RunLog:
        return records.RunLog(self.output_dir / records.DISTILL_LOG)

    @property
    def alpha(self) -> float:
        return self.args.distillation_weight

    @property
    def global_batch(self) -> int:
        return self.args.per_device_batch_size * self.accelerator.num_processes

    def unwrapped(self) -> SimCLRForImageClassification:
        return self.accelerator.unwrap_model(self.student)

    def resumable(self) -> Resumable:
        return Resumable(self.unwrapped(), self.optimizer, self.scheduler, self.state)


def distill(args: DistillArguments) -> dict[str, Any]:
    """Distil ``args.teacher`` into ``args.student`` as ``args`` describe; returns the final results. A folder whose
    distillation finished is left as it is with ``--resume_from_checkpoint latest`` (its results are returned)."""
    accelerator = Accelerator(kwargs_handlers=[process_group_kwargs(args.ddp_timeout)])
    with OutputDirLock(args.output_dir, hold=False) as lock:
        main_process_decides(accelerator, lock.acquire)  # the main process holds it; its refusal ends all of them
        run = None

        def reached() -> int:
            return run.state.step if run is not None else 0

        with console.stops_in_one_line(args.output_dir, args.ddp_timeout, accelerator, reached):
            finished = main_process_decides(accelerator, lambda: check_output_dir(args))
            if finished is not None:
                if accelerator.is_main_process:
                    console.say(f"{args.output_dir} holds a finished distillation: nothing to resume, nothing changed")
                return finished
            with console.StopRequest() as stop:
                run = build_run(args, accelerator)
                resume(run)
                stop_if_requested(run, stop)
                if accelerator.is_main_process:
                    start_records(args, run.state.step)
                measure_at_start(run)
                train(run, stop)
                return finish(run)


def build_run(args: DistillArguments, accelerator: Accelerator) -> Run:
    """Teacher, data, student, optimiser and schedule, prepared for this process."""
    set_seed(args.seed)
    teacher = load_teacher(args.teacher)
    images = load_training_images(args, teacher)
    student = build_student(args.student, teacher, args.image_size, args.seed)
    temperature = args.temperature or default_temperature(teacher.config, student.config)
    device, world = accelerator.device, accelerator.num_processes
    teacher.model.to(device)
    processor = teacher.processor if args.distillation_weight > 0 else None  # labels alone: no teacher pass
    views = DistillationViews(
        images.rows,
        args.image_column,
        images.labels,
        student.config.image_size,
        args.min_crop_scale,
        processor,
        args.seed,
    )
    sampler = EpochBatchSampler(len(views), args.per_device_batch_size, accelerator.process_index, world, args.seed)
    workers = num_workers(args, world)
    loader = DataLoader(views, batch_sampler=sampler, **loader_kwargs(workers, device, collate_distillation))
    steps_per_epoch = sampler.steps_per_epoch
    total_steps = args.max_steps or args.epochs * steps_per_epoch
    global_batch = args.per_device_batch_size * world
    lr = scaled_learning_rate(args.learning_rate, global_batch, args.lr_scaling)
    student = with_sync_batch_norm(student, world, device).to(memory_format=torch.channels_last)
    optimizer = build_lars(student, lr=lr, weight_decay=args.weight_decay)
    warmup = min(total_steps, round(args.warmup_epochs * steps_per_epoch))
    scheduler = build_schedule(optimizer, warmup, total_steps)
    student, optimizer = accelerator.prepare(student, optimizer)
    run = Run(
        args,
        accelerator,
        teacher,
        images,
        student,
        optimizer,
        scheduler,
        loader,
        sampler,
        views,
        temperature,
        same_architecture(teacher.config, accelerator.unwrap_model(student).config),
        lr,
        steps_per_epoch,
        total_steps,
        images.held_out,
    )
    run.state.definition = definition(run)
    return run


def definition(run: Run) -> dict[str, Any]:
    """The settings that make the run this run: a checkpoint resumes only a run with the same ones."""
    args = run.args

    def where(value: str | None) -> str | None:
        return os.path.abspath(os.path.expanduser(value)) if value and records.is_local_path(value) else value

    values = {
        "teacher": where(args.teacher),
        "student": where(args.student),
        "dataset": where(args.dataset),
        "dataset_config": args.dataset_config,
        "train_split": args.train_split,
        "image_column": args.image_column,
        "label_column": run.images.label_column,
        "seed": args.seed,
        "global_batch_size": run.global_batch,
        "image_size": run.unwrapped().config.image_size,
        "min_crop_scale": args.min_crop_scale,
        "temperature": run.temperature,
        "distillation_weight": args.distillation_weight,
        "label_fraction": run.images.label_fraction,
        "label_seed": run.images.label_seed,
    }
    return json.loads(json.dumps(values))


def resume(run: Run) -> None:
    """Load the checkpoint ``--resume_from_checkpoint`` names (none: start afresh), refusing one of another run."""
    args, accelerator = run.args, run.accelerator
    if not args.resume_from_checkpoint:
        return
    chosen = choose_checkpoint(accelerator, args.resume_from_checkpoint, run.checkpoint_root)
    if chosen is None:
        if accelerator.is_main_process:
            console.say(f"no checkpoint in {run.checkpoint_root} yet: starting afresh at step 0")
        return
    path, saved = chosen
    changed = {k: (saved["run"].get(k), v) for k, v in run.state.definition.items() if saved["run"].get(k) != v}
    if changed:
        shown = ", ".join(f"--{k} {after} (it has {before})" for k, (before, after) in changed.items())
        raise UsageError(
            f"--resume_from_checkpoint {args.resume_from_checkpoint}: the checkpoint of step {saved['step']} belongs "
            f"to another distillation: {shown}; resume with its settings, or start afresh with --overwrite_output_dir"
        )
    load_checkpoint(accelerator, path, run.resumable(), args.resume_from_checkpoint)
    run.checkpointed_step = run.state.step
    if accelerator.is_main_process:
        console.say(f"resumed from {path} at step {run.state.step}")


def measure_at_start(run: Run) -> None:
    """The teacher's held-out logits (the targets of every comparison) and, in a fresh run, how far the student is
    from the teacher before training (kept in the checkpoints, so a resumed run reports it too)."""
    held_out = run.held_out
    if held_out is None:
        return
    options = dict(image_column=run.args.image_column, batch_size=run.args.per_device_batch_size)
    options["num_workers"] = min(2, num_workers(run.args, run.accelerator.num_processes))
    teacher_view(held_out, run.teacher.model, run.teacher.processor, run.accelerator, **options)
    if run.state.step == 0:
        metrics, details = compare(student_logits(run), held_out, run.temperature)
        if run.accelerator.is_main_process:
            console.say(f"before training: {summary_line(metrics, details)}")
        details.pop("teacher_top1", None)  # the teacher's does not change
        run.state.random_init = {f"{key}_at_start": value for key, value in {**metrics, **details}.items()}


def student_logits(run: Run) -> torch.Tensor:
    processor = build_image_processor(run.unwrapped().config)
    options = dict(image_column=run.args.image_column, batch_size=run.args.per_device_batch_size)
    options["num_workers"] = min(2, num_workers(run.args, run.accelerator.num_processes))
    return predict(run.unwrapped(), processor, run.held_out, run.accelerator, desc="student", **options)[0]


def summary_line(metrics: dict[str, float], details: dict[str, float]) -> str:
    """``agreement with the teacher 91.2 %, KL from the teacher 0.21, top-1 83.0 % (teacher 84.1 %)``."""
    parts = [f"agreement with the teacher {console.percent(metrics['teacher_agreement'])}"]
    parts.append(f"KL from the teacher {details['teacher_kl']:.3f}")
    if "distill_top1" in metrics:
        parts.append(
            f"top-1 {console.percent(metrics['distill_top1'])} (teacher {console.percent(details['teacher_top1'])})"
        )
    return ", ".join(parts)


def train_step(run: Run, batch: dict[str, Any], normalise: Any) -> torch.Tensor:
    """One step: the student's logits on its crops; the distillation loss against the teacher's softened
    distribution on the whole images, and the label loss on the labelled rows, weighed by ``--distillation_weight``;
    backward, LARS and schedule steps."""
    device = run.accelerator.device
    logits = run.student(pixel_values=normalise(batch["student_pixels"])).logits
    loss = logits.new_zeros(())
    if run.alpha > 0:
        with torch.no_grad(), run.accelerator.autocast():
            teacher = run.teacher.model(pixel_values=batch["teacher_pixel_values"].to(device, non_blocking=True))
        loss = loss + run.alpha * distillation_loss(logits, teacher.logits, run.temperature)
    if run.alpha < 1:
        loss = loss + (1 - run.alpha) * label_loss(logits, batch["labels"].to(device, non_blocking=True))
    run.accelerator.backward(loss)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def train(run: Run, stop: console.StopRequest) -> None:
    """Steps until the last, epoch by epoch; logs, checkpoints and stops (Ctrl-C, a scheduler's signal) between
    steps, as pretraining does."""
    stop.in_loop = True
    state, accelerator = run.state, run.accelerator
    config = run.unwrapped().config
    normalise = normaliser(config.image_mean, config.image_std, accelerator.device)
    progress = tqdm(total=run.total_steps, initial=state.step, disable=not accelerator.is_main_process, unit="step")
    loss_sum, since, started = torch.zeros((), device=accelerator.device), state.step, time.perf_counter()
    try:
        while state.step < run.total_steps:
            epoch, start = divmod(state.step, run.steps_per_epoch)
            run.sampler.set_epoch(epoch, start)
            run.views.set_epoch(epoch)
            run.student.train()
            for batch in run.loader:
                state.unreadable.update((int(index), name) for index, name in batch["unreadable"])
                loss_sum += train_step(run, batch, normalise)
                state.step += 1
                progress.update(1)
                if state.step % run.args.log_every == 0 or state.step == run.total_steps:
                    mean = accelerator.reduce(loss_sum, reduction="mean").item() / (state.step - since)
                    if not math.isfinite(mean):
                        raise NonFiniteLossError(
                            f"the loss became non-finite by step {state.step}; the last good checkpoint is kept in "
                            f"{run.checkpoint_root}. Lower --learning_rate"
                        )
                    seconds = time.perf_counter() - started
                    row = dict(loss=mean, lr=run.scheduler.get_last_lr()[0])
                    row["images_per_s"] = run.global_batch * (state.step - since) / seconds
                    progress.set_postfix(loss=f"{mean:.4f}", lr=f"{row['lr']:.3g}")
                    if accelerator.is_main_process:
                        run.log.write(state.step, state.step / run.steps_per_epoch, **row)
                    run.last_loss = mean
                    loss_sum.zero_()
                    since, started = state.step, time.perf_counter()
                every = run.args.checkpointing_steps
                if every and state.step % every == 0 and state.step < run.total_steps:
                    save_checkpoint_now(run)
                if state.step >= run.total_steps:
                    break
                stop_if_requested(run, stop)
    finally:
        stop.in_loop = False
        progress.close()


def save_checkpoint_now(run: Run) -> None:
    save_checkpoint(run.accelerator, run.checkpoint_root, run.resumable(), run.args.checkpoints_total_limit)
    run.checkpointed_step = run.state.step


def stop_if_requested(run: Run, stop: console.StopRequest) -> None:
    """Ctrl-C raises ``KeyboardInterrupt``; SIGTERM or SIGUSR1 saves a checkpoint of the last step first, then raises
    :class:`RunPreempted` (every process calls this at the same points)."""

    def save_last_step() -> None:
        if run.state.step > run.checkpointed_step:
            save_checkpoint_now(run)

    console.stop_if_requested(stop, run.accelerator, run.state.step, save_last_step)


def finish(run: Run) -> dict[str, Any]:
    """The last checkpoint; the held-out comparison with the teacher; then (main process) the student, its results,
    card and curves, the results file that marks the run finished, and a push if asked. Returns the results."""
    args, accelerator, state = run.args, run.accelerator, run.state
    if run.checkpointed_step != state.step:
        save_checkpoint_now(run)
    metrics, details = ({}, {}) if run.held_out is None else compare(student_logits(run), run.held_out, run.temperature)
    unreadable = dict(gather_object(sorted(state.unreadable.items())))
    dataset_name, dataset_id = records.dataset_names(args.dataset)
    results = {
        **metrics,
        **details,
        **state.random_init,
        "steps": state.step,
        "epochs": state.step / run.steps_per_epoch,
        "global_batch_size": run.global_batch,
        "learning_rate": run.learning_rate,
        "temperature": run.temperature,
        "self_distillation": run.self_distillation,
        "num_processes": accelerator.num_processes,
        "dataset": dataset_name,
        "dataset_id": dataset_id,
        "eval_split": run.held_out.split if run.held_out is not None else None,
        "final_loss": run.last_loss,
        "skipped_images": len(unreadable),
    }
    if accelerator.is_main_process:
        if metrics:
            console.say(f"after training: {summary_line(metrics, details)}")
        split = run.held_out.split if run.held_out is not None else None
        save_student(args, run.unwrapped(), recipe(run, details), metrics, split, results)
    accelerator.end_training()
    return results


def recipe(run: Run, details: dict[str, Any]) -> dict[str, Any]:
    """What the student's records and card say of how it was trained."""
    args = run.args
    rule = {"sqrt": f"{args.learning_rate:g} x sqrt(B)", "linear": f"{args.learning_rate:g} x B / 256"}
    return {
        "teacher": records.public_model_name(args.teacher),
        "student": records.public_model_name(args.student),
        "train_split": args.train_split,
        "num_train": len(run.views),
        "num_labelled": run.images.num_labelled,
        "label_fraction": run.images.label_fraction,
        "distillation_weight": args.distillation_weight,
        "temperature": run.temperature,
        "self_distillation": run.self_distillation,
        "steps": run.state.step,
        "epochs": run.state.step / run.steps_per_epoch,
        "global_batch_size": run.global_batch,
        "learning_rate": run.learning_rate,
        "learning_rate_rule": rule.get(args.lr_scaling, "as given"),
        "weight_decay": args.weight_decay,
        "warmup_epochs": args.warmup_epochs,
        "image_size": run.unwrapped().config.image_size,
        "min_crop_scale": args.min_crop_scale,
        "seed": args.seed,
        **details,
        **run.state.random_init,
    }


__all__ = ["Run", "distill", "train_step"]
