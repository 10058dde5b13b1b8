"""SimCLR pretraining with Accelerate: one loop for a laptop CPU, one GPU, or many GPUs on many machines.

:func:`train_step` is one SimCLR step; :func:`pretrain` is the whole run, phase by phase: start the run, find the
checkpoint to resume from and check that it belongs to this run, load the data, build the model and optimiser, resume,
measure the untrained baseline, train (with the periodic actions :func:`log_progress`, :func:`save_checkpoint_if_due`
and :func:`monitor_if_due`, and :func:`stop_if_requested` after every step), finish.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from ..augment import SimCLRGPUAugment
from ..data import load_image_dataset
from ..errors import NonFiniteLossError, UsageError
from ..hub import records
from ..hub.card import write_model_card
from ..hub.export import export_timm_encoder, save_model
from ..hub.output_lock import OutputDirLock
from ..modeling_simclr import SimCLRModel
from ..optim import apply_hyperparameters, hyperparameters
from . import console, run_identity
from .arguments import PretrainArguments
from .checkpoint import (
    Resumable,
    TrainState,
    choose_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from .components import TrainingData, augment_recipe, build_model, build_optimizer, build_training_data
from .distributed import main_process_decides, process_group_kwargs
from .grad_cache import grad_cache_step
from .monitor import KnnMonitor


def train_step(run: Run, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One SimCLR step: augment both views, encode and project them, NT-Xent, backward, LARS and schedule step."""
    x1 = batch["pixel_values"].to(run.device, non_blocking=True)
    x2 = batch["pixel_values_2"].to(run.device, non_blocking=True)
    # each view's jitter, grayscale and blur were drawn with its crop, from (seed, epoch, image index, view) alone
    uniforms = batch["augment_uniforms"]
    with torch.no_grad():
        view_1, view_2 = run.augment(x1, uniforms[:, 0]), run.augment(x2, uniforms[:, 1])
    generator = None
    if run.args.grad_cache_chunk:  # its chunks' permutation depends only on (seed, step, process): resumable
        generator = torch.Generator().manual_seed(run.args.seed * 1_000_003 + run.state.step * 1009 + run.rank)
    loss = forward_backward(run.model, view_1, view_2, run.accelerator, run.args.grad_cache_chunk, generator)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def forward_backward(
    model: torch.nn.Module,
    view_1: torch.Tensor,
    view_2: torch.Tensor,
    accelerator: Accelerator,
    grad_cache_chunk: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """NT-Xent of the two views and its gradients, in one pass or, with ``grad_cache_chunk``, chunk by chunk (chunks
    of views drawn by ``generator``)."""
    if grad_cache_chunk:
        return grad_cache_step(model, view_1, view_2, grad_cache_chunk, accelerator, generator)
    loss = model(pixel_values=view_1, pixel_values_2=view_2).loss
    accelerator.backward(loss)
    return loss


COLLAPSE_TOLERANCE = 1e-3  # a loss this close to ln(2N - 1) ...
COLLAPSE_STEPS = 10  # ... for this many steps in a row: a representation collapse, not a loss passing by


def collapsed_loss(global_batch: int) -> float:
    """NT-Xent of 2N identical embeddings, ln(2N - 1): each anchor's positive scores like its 2N - 2 negatives."""
    return math.log(2 * global_batch - 1)


class LossTracker:
    """The loss summed since the last log row, the first step whose loss was not finite, and how many steps in a row
    the loss has been that of a representation collapse (:func:`collapsed_loss`).

    All stay on the device: reading them synchronises the processes, so that happens only when they synchronise
    anyway (log rows and checkpoints).
    """

    def __init__(self, device: torch.device, step: int, global_batch: int) -> None:
        self.loss_sum = torch.zeros((), device=device)
        self.first_bad_step = torch.full((), -1, device=device, dtype=torch.long)
        self.collapsed_steps = torch.zeros((), device=device, dtype=torch.long)
        self.collapsed_loss = collapsed_loss(global_batch)
        self.last_step, self.last_time = step, time.perf_counter()

    def add(self, loss: torch.Tensor, step: int) -> None:
        self.loss_sum += loss
        self.first_bad_step = torch.where(torch.isfinite(loss) | (self.first_bad_step >= 0), self.first_bad_step, step)
        collapsed = (loss - self.collapsed_loss).abs() < COLLAPSE_TOLERANCE
        self.collapsed_steps = torch.where(collapsed, self.collapsed_steps + 1, 0)

    def check_finite(self, accelerator: Accelerator, checkpoint_root: Path) -> None:
        bad = int(accelerator.reduce(self.first_bad_step, reduction="max").item())
        if bad >= 0:
            raise NonFiniteLossError(
                f"the loss became non-finite at step {bad}; the last good checkpoint is kept in {checkpoint_root}. "
                "Lower --learning_rate or raise --temperature"
            )

    def take_interval(self, accelerator: Accelerator, step: int) -> tuple[float, int, float]:
        """(mean loss over all processes, steps, seconds) since the last call; starts the next interval."""
        steps = step - self.last_step
        mean_loss = accelerator.reduce(self.loss_sum, reduction="mean").item() / steps
        now = time.perf_counter()
        seconds = now - self.last_time
        self.loss_sum.zero_()
        self.last_step, self.last_time = step, now
        return mean_loss, steps, seconds


@dataclass
class Run:
    """Everything the loop works with; built once by :func:`pretrain`."""

    args: PretrainArguments
    accelerator: Accelerator
    data: TrainingData
    model: torch.nn.Module  # prepared: DDP-wrapped and compiled as asked
    optimizer: Optimizer
    scheduler: LambdaLR
    augment: SimCLRGPUAugment
    learning_rate: float
    monitor: KnnMonitor | None
    state: TrainState = field(default_factory=TrainState)
    metrics: dict[str, float] = field(default_factory=dict)  # the last log row's
    collapse_step: int | None = None  # the first step of a representation collapse
    last_knn: tuple[int, dict[str, float]] | None = None  # the step of the monitor's last run and its accuracies
    checkpointed_step: int = 0  # the step of the newest checkpoint, written or resumed from

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def output_dir(self) -> Path:
        return Path(self.args.output_dir)

    @property
    def checkpoint_root(self) -> Path:
        return self.output_dir / records.CHECKPOINTS

    @property
    def log(self) -> records.RunLog:
        return records.RunLog(self.output_dir / records.TRAIN_LOG)

    def epoch(self) -> float:
        return self.state.step / self.data.steps_per_epoch

    def unwrapped_model(self) -> SimCLRModel:
        model = self.accelerator.unwrap_model(self.model)
        return getattr(model, "_orig_mod", model)

    def resumable(self) -> Resumable:
        return Resumable(self.unwrapped_model(), self.optimizer, self.scheduler, self.state)


@dataclass
class Resumption:
    """The checkpoint a run resumes from, and the settings that define the run which it changes (asked for with
    ``--allow_run_changes``), as ``{name: [the checkpoint's, this run's]}``."""

    path: Path
    changes: dict[str, list[Any]]


def pretrain(args: PretrainArguments) -> dict[str, Any]:
    """Run SimCLR pretraining as `args` describe; returns the final metrics. Saves the model to `args.output_dir`.

    ``--resume_from_checkpoint latest`` in a folder whose run finished changes nothing and returns that run's
    results; a checkpoint named by its folder resumes from there and finishes the run again. Ctrl-C raises
    :class:`~hf_simclr.errors.RunInterrupted`, whose message names the last checkpoint and the command that resumes;
    SIGTERM or SIGUSR1 (a scheduler's) saves a checkpoint of the last step, then raises
    :class:`~hf_simclr.errors.RunPreempted`.
    """
    args = args.resolved()
    log_with = None if args.report_to == "none" else args.report_to
    # every wait for a peer ends after --ddp_timeout, and a restarted worker never meets its predecessors' keys
    process_group = process_group_kwargs(args.ddp_timeout)
    accelerator = Accelerator(log_with=log_with, project_dir=args.output_dir, kwargs_handlers=[process_group])
    if accelerator.gradient_accumulation_steps > 1:
        # SimCLR's negatives are the other images of the batch: accumulating gradients adds none
        raise UsageError(
            f"gradient accumulation ({accelerator.gradient_accumulation_steps} steps, from the accelerate config) "
            "adds no negatives to SimCLR's loss: set gradient_accumulation_steps to 1 and fit large batches with "
            "--grad_cache_chunk"
        )
    # the output folder is this run's until it ends: writable, and no other run writes there meanwhile
    with OutputDirLock(args.output_dir, hold=False) as lock:
        run = None

        def reached() -> int:
            return run.state.step if run is not None else 0

        with console.stops_in_one_line(args.output_dir, args.ddp_timeout, accelerator, reached):
            # the main process alone holds it; its refusal ends every process at once
            main_process_decides(accelerator, lock.acquire)
            start_run(args, accelerator)
            # `latest` in a finished run: nothing to resume (a checkpoint named by its folder resumes from there)
            finished = records.finished_run(args.output_dir) if args.resume_from_checkpoint == "latest" else None
            if finished is not None:
                if accelerator.is_main_process:
                    console.say(console.finished_message(args.output_dir, finished))
                return finished
            with console.StopRequest() as stop:
                resumption = checkpoint_to_resume(args, accelerator)
                run = build_run(args, accelerator)
                resume(run, resumption)
                stop_if_requested(run, stop)
                write_run_records(run)
                accelerator.init_trackers("simclr", config=tracker_config(run))
                print_summary(run)
                measure_baseline(run)
                stop_if_requested(run, stop)
                train(run, stop)
                return finish(run)


def start_run(args: PretrainArguments, accelerator: Accelerator) -> None:
    """Refuses an output folder that holds another run; seeds every process."""
    args.check_output_dir(accelerator.num_processes)
    set_seed(args.seed)  # the same initial weights on every process


def build_run(args: PretrainArguments, accelerator: Accelerator) -> Run:
    """Data, kNN monitor, model, optimiser, schedule and augmentation, prepared for this process."""
    device, world = accelerator.device, accelerator.num_processes
    train_data = load_image_dataset(
        args.dataset,
        split=args.train_split,
        image_column=args.image_column,
        streaming=args.streaming,
        **args.load_kwargs(),
    )
    data = build_training_data(args, train_data, accelerator.process_index, world, device)
    monitor = KnnMonitor.create(args, train_data) if accelerator.is_main_process else None
    if isinstance(monitor, str):
        console.say(f"kNN monitor off: {monitor}")  # only the main process has a monitor, or its reason
        monitor = None
    elif monitor is not None and (line := monitor.not_reported()):
        console.say(f"kNN monitor: {line}")
    model = build_model(args, world, device)
    optimizer, scheduler, lr = build_optimizer(model, args, data)
    config = model.config
    model, optimizer = accelerator.prepare(model, optimizer)
    if args.compile:
        # after DDP wrapping, so the compiler can overlap gradient all-reduces with the backward pass
        model = torch.compile(model)
    augment = SimCLRGPUAugment(
        augment_recipe(args), mean=config.image_mean, std=config.image_std, compile_ops=args.compile
    ).to(device)
    run = Run(args, accelerator, data, model, optimizer, scheduler, augment, lr, monitor)
    run.state.definition = run_identity.definition(args, world)
    return run


def checkpoint_to_resume(args: PretrainArguments, accelerator: Accelerator) -> Resumption | None:
    """The checkpoint ``--resume_from_checkpoint`` names, found to belong to this run before any data is loaded (see
    :mod:`.run_identity`); None to start afresh: without the flag, or with ``latest`` and no checkpoint yet, so that
    one command serves the first start and every restart."""
    if not args.resume_from_checkpoint:
        return None
    root = Path(args.output_dir) / records.CHECKPOINTS
    chosen = choose_checkpoint(accelerator, args.resume_from_checkpoint, root)
    if chosen is None:
        if accelerator.is_main_process:
            console.say(f"no checkpoint in {root} yet: starting afresh at step 0")
        return None
    path, saved = chosen
    where = f"--resume_from_checkpoint {args.resume_from_checkpoint}: the checkpoint of step {saved['step']}"
    current = run_identity.definition(args, accelerator.num_processes)
    return Resumption(path, run_identity.changed_settings(saved["run"], current, where, args.allow_run_changes))


def resume(run: Run, resumption: Resumption | None) -> None:
    """Load the full training state of the checkpoint: weights, optimiser state, schedule, random generators, step.

    The schedule and optimiser settings are this run's (``--learning_rate``, ``--lr_scaling``, ``--warmup_epochs``,
    ``--epochs`` / ``--max_steps``, ``--weight_decay``), applied from the checkpoint's step on: resuming with a lower
    learning rate lowers it.
    """
    if resumption is None:
        return
    settings = hyperparameters(run.optimizer)
    load_checkpoint(run.accelerator, resumption.path, run.resumable(), run.args.resume_from_checkpoint)
    saved_lr = run.scheduler.base_lrs[0]
    apply_hyperparameters(run.scheduler, settings)
    run.checkpointed_step = run.state.step
    if resumption.changes:
        run.state.changes.append({"step": run.state.step, "changes": resumption.changes})
    if run.accelerator.is_main_process:
        console.say(f"resumed from {resumption.path} at step {run.state.step}")
        if resumption.changes:
            console.say(
                f"settings that define the run changed, as --allow_run_changes asks: "
                f"{run_identity.change_line(resumption.changes)} (results.json and the model card record it)"
            )
        if not math.isclose(saved_lr, run.learning_rate):
            console.say(f"learning rate {run.learning_rate:.4g} from here on (the checkpoint's: {saved_lr:.4g})")


def write_run_records(run: Run) -> None:
    """``training_args.json``, and no ``results.json`` (which marks a finished run) until the run has finished; a
    fresh run also removes what the run it replaces left: its log, evaluations and checkpoints; a resumed one the log
    rows written after its checkpoint."""
    if not run.accelerator.is_main_process:
        return
    run.output_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(run.output_dir / records.TRAINING_ARGS, asdict(run.args))
    (run.output_dir / records.RESULTS).unlink(missing_ok=True)  # not finished (again) until it has finished
    if run.state.step == 0:
        run.log.clear()
        (run.output_dir / records.EVAL_RESULTS).unlink(missing_ok=True)
        shutil.rmtree(run.checkpoint_root, ignore_errors=True)  # --overwrite_output_dir: the old run's checkpoints
    else:
        run.log.drop_rows_after(run.state.step)  # rows the interrupted run logged after its checkpoint


def tracker_config(run: Run) -> dict[str, Any]:
    """The arguments logged to TensorBoard / W&B: as published, with paths reduced to names (TensorBoard's files
    are pushed with the model), unset ones left out, others (a dict of ``--backbone_kwargs``) as JSON: the scalars
    experiment trackers take."""
    public = records.public_training_args(asdict(run.args), records.dataset_names(run.args.dataset))
    values = {key: value for key, value in public.items() if value is not None}
    return {key: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for key, v in values.items()}


def measure_baseline(run: Run) -> None:
    """kNN accuracy of the encoder at random initialisation: the baseline the pretrained features must beat."""
    if run.monitor is None or run.state.step != 0:
        return
    knn = run.monitor(run.unwrapped_model(), run.device)
    run.state.random_init = {f"{k}{records.RANDOM_INIT_SUFFIX}": v for k, v in knn.items()}
    run.log.write(0, 0.0, **run.state.random_init)
    console.say("random init: " + knn_line(knn))


def knn_line(knn: dict[str, float]) -> str:
    """``kNN top-1 accuracy (k=20) 71.2 %, ...``"""
    return ", ".join(f"{records.metric_name(k)} {console.percent(v)}" for k, v in knn.items())


def print_summary(run: Run) -> None:
    args, data, processes = run.args, run.data, run.accelerator.num_processes
    if run.accelerator.is_main_process:
        console.say(
            f"SimCLR {args.backbone} @ {args.image_size}px: {data.total_steps} steps of {data.global_batch} images "
            f"({processes} process{'es' * (processes > 1)}), lr {run.learning_rate:.4g}, "
            f"{data.workers} data worker{'s' * (data.workers != 1)} per process"
        )


def train(run: Run, stop: console.StopRequest | None = None) -> None:
    """Steps until ``total_steps``, epoch by epoch, with the periodic actions after each step; stops between two
    steps when ``stop`` was requested (Ctrl-C, or a scheduler's signal: see :func:`stop_if_requested`)."""
    stop = stop or console.StopRequest()
    stop.in_loop = True
    data, state = run.data, run.state
    progress = tqdm(
        total=data.total_steps, initial=state.step, disable=not run.accelerator.is_main_process, unit="step"
    )
    losses = LossTracker(run.device, state.step, data.global_batch)
    try:
        while state.step < data.total_steps:
            epoch, start = divmod(state.step, data.steps_per_epoch)
            if data.sampler is not None:
                data.sampler.set_epoch(epoch, start)
            data.loader.dataset.set_epoch(epoch)  # streamed data: a new shuffle of the shards each epoch
            run.model.train()
            step_before = state.step
            for batch in data.loader:
                state.skipped_images += int(batch["num_skipped"])
                state.unreadable.update((int(index), name) for index, name in batch.get("unreadable", ()))
                loss = train_step(run, batch)
                state.step += 1
                progress.update(1)
                losses.add(loss, state.step)
                log_progress(run, losses, progress)
                save_checkpoint_if_due(run, losses)
                monitor_if_due(run)
                if state.step >= data.total_steps:
                    break
                # every step: a stop asked of any process reaches all of them before the next step
                stop_if_requested(run, stop, losses)
            if state.step == step_before:  # a stream with fewer readable images than one batch: never any step
                raise UsageError(
                    f"process {run.rank} read a whole pass over its data without one batch of "
                    f"{run.args.per_device_batch_size} readable images: lower --per_device_batch_size or use more "
                    "data per process"
                )
    finally:
        stop.in_loop = False
        progress.close()  # before any error message, which then gets its own line
    losses.check_finite(run.accelerator, run.checkpoint_root)


def log_progress(run: Run, losses: LossTracker, progress: tqdm) -> None:
    """Every ``--log_every`` steps and at the end: mean loss, learning rate, throughput, skipped images, memory."""
    step = run.state.step
    if step % run.args.log_every and step != run.data.total_steps:
        return
    losses.check_finite(run.accelerator, run.checkpoint_root)
    mean_loss, steps, seconds = losses.take_interval(run.accelerator, step)
    views_per_s = 2 * run.data.global_batch * steps / seconds
    run.metrics = {
        "loss": mean_loss,
        "lr": run.scheduler.get_last_lr()[0],
        "views_per_s": views_per_s,
        "skipped_images": run.state.skipped_images + len(run.state.unreadable),
        "peak_memory_mb": peak_memory_mb(run.device),
    }
    run.accelerator.log(run.metrics, step=step)
    progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{run.metrics['lr']:.3g}", views_s=f"{views_per_s:.0f}")
    if run.accelerator.is_main_process:
        run.log.write(step, run.epoch(), **run.metrics)
    warn_if_collapsed(run, losses, progress)


def warn_if_collapsed(run: Run, losses: LossTracker, progress: tqdm) -> None:
    """Warn once when the loss says that every image gets the same embedding (a representation collapse)."""
    if run.collapse_step is not None:
        return
    steps = int(losses.collapsed_steps.item())
    if steps < COLLAPSE_STEPS:
        return
    run.collapse_step = run.state.step - steps + 1
    if run.accelerator.is_main_process:
        console.say(
            f"warning: representation collapse since step {run.collapse_step}: the loss is ln(2N - 1) = "
            f"{losses.collapsed_loss:.4f}, so every image gets the same embedding and nothing more is learned; the "
            f"usual cause is a too high learning rate (now {run.scheduler.get_last_lr()[0]:.4g}): lower "
            "--learning_rate (or raise --warmup_epochs) and start again"
        )


def stop_if_requested(run: Run, stop: console.StopRequest, losses: LossTracker | None = None) -> None:
    """Stop if any process was asked to (every process calls this at the same points): Ctrl-C raises
    ``KeyboardInterrupt``; SIGTERM or SIGUSR1 (a scheduler about to end the job) first saves a checkpoint of the last
    step if it has none, then raises :class:`RunPreempted`, whose message says how to resume."""

    def save_last_step() -> None:
        if run.state.step > run.checkpointed_step and losses is not None:
            save_checkpoint_now(run, losses)

    console.stop_if_requested(stop, run.accelerator, run.state.step, save_last_step)


def save_checkpoint_if_due(run: Run, losses: LossTracker) -> None:
    """Every ``--checkpointing_steps`` steps: :func:`save_checkpoint_now`."""
    if run.args.checkpointing_steps and run.state.step % run.args.checkpointing_steps == 0:
        save_checkpoint_now(run, losses)


def save_checkpoint_now(run: Run, losses: LossTracker) -> None:
    """The full training state now, if every loss so far was finite."""
    losses.check_finite(run.accelerator, run.checkpoint_root)
    save_checkpoint(run.accelerator, run.checkpoint_root, run.resumable(), run.args.checkpoints_total_limit)
    run.checkpointed_step = run.state.step


def monitor_if_due(run: Run) -> None:
    """Every ``--eval_every`` epochs (main process): the kNN monitor, logged and printed."""
    epochs_done, rest = divmod(run.state.step, run.data.steps_per_epoch)
    if run.monitor is None or not run.args.eval_every or rest or epochs_done % run.args.eval_every:
        return
    knn = run.monitor(run.unwrapped_model(), run.device)
    run.last_knn = (run.state.step, knn)
    run.accelerator.log(knn, step=run.state.step)
    run.log.write(run.state.step, run.epoch(), **knn)
    console.say(f"epoch {epochs_done}: {knn_line(knn)}")


def finish(run: Run) -> dict[str, Any]:
    """The last checkpoint, the final kNN accuracy, then (main process) the model, its card, plots and results; export
    and push if asked; a summary. Returns the final metrics."""
    args, state, accelerator = run.args, run.state, run.accelerator
    if run.checkpointed_step != state.step:
        save_checkpoint(accelerator, run.checkpoint_root, run.resumable(), args.checkpoints_total_limit)
        run.checkpointed_step = state.step
    skipped = skipped_images_message(run)
    dataset_name, dataset_id = records.dataset_names(args.dataset)
    results = {**run.metrics, "steps": state.step, "global_batch_size": run.data.global_batch}
    results.update(learning_rate=run.learning_rate, num_processes=accelerator.num_processes)
    results.update(dataset=dataset_name, dataset_id=dataset_id)
    if run.collapse_step is not None:
        results["representation_collapse_step"] = run.collapse_step
    if state.changes:  # resumed with other data, seed, ...: both are part of this model's story
        results["run_changes"] = records.public_run_changes(state.changes)
    if accelerator.is_main_process:
        if skipped:
            console.say(skipped)
        if run.monitor is not None:
            if run.last_knn is not None and run.last_knn[0] == state.step:
                knn = run.last_knn[1]  # the monitor just ran on these weights
            else:
                knn = run.monitor(run.unwrapped_model(), run.device)
            results.update(knn, **state.random_init, eval_split=run.monitor.split)
            # the card says when the memory bank is only a sample of the training images
            results.update(knn_bank_images=len(run.monitor.bank), train_images=run.monitor.num_train)
            run.log.write(state.step, run.epoch(), **knn, **state.random_init)
        save_run(run, results)
    # The others end without waiting for the main process's saving and upload (after the last checkpoint's
    # barrier), so --ddp_timeout bounds the time a peer may hang and never cuts a slow upload short.
    accelerator.end_training()
    return results


def skipped_images_message(run: Run) -> str | None:
    """The unreadable images of all processes: distinct files, the first few named (every process must call it)."""
    unreadable = dict(gather_object(sorted(run.state.unreadable.items())))
    dropped = torch.tensor(run.state.skipped_images, device=run.device)
    return console.skipped_message(unreadable, int(run.accelerator.reduce(dropped, reduction="sum").item()))


def save_run(run: Run, results: dict[str, Any]) -> None:
    """Save the model, its card, the training curves and (last: they mark the run finished) the results; export and
    push if asked; print the summary."""
    args, output_dir = run.args, run.output_dir
    # a fresh model holds plain BatchNorm (not SyncBatchNorm) and the default memory format
    trained = run.unwrapped_model()
    model = SimCLRModel(trained.config)
    model.load_state_dict(trained.state_dict())
    model.eval()
    results["feature_dim"] = model.num_features
    then = "the last checkpoint is complete: go on with --resume_from_checkpoint latest"
    with records.writing(output_dir, "the model", then=then):
        save_model(model, output_dir)
    write_model_card(output_dir, results=results)
    files = [records.MODEL_CARD]
    if args.timm_export:
        with records.writing(output_dir, "the timm export", partial=output_dir / "timm", then=then):
            export_timm_encoder(model, output_dir / "timm")
        files.append("timm/")
    files += plot_training_curves(run)
    records.write_json(output_dir / records.RESULTS, results)
    pushed: list[str] = []
    if args.push_to_hub:
        from ..hub.push import push_folder_to_hub, push_timm_folder_to_hub, pushed_line

        timm_repo = f"{args.hub_model_id}-timm" if args.timm_export else None
        common = dict(private=args.hub_private)
        pushed.append(pushed_line(push_folder_to_hub(output_dir, args.hub_model_id, timm_repo=timm_repo, **common)))
        if timm_repo:
            url = push_timm_folder_to_hub(output_dir / "timm", timm_repo, model_repo=args.hub_model_id, **common)
            pushed.append(pushed_line(url))
    timm_dir = output_dir / "timm" if args.timm_export else None
    console.say(console.final_summary(output_dir, results, files, pushed, timm_dir))


def plot_training_curves(run: Run) -> list[str]:
    """``training_curves.png`` (loss and kNN accuracy), or one line saying how to get it; the names written."""
    from ..evaluation.plots import missing_plot_packages

    if missing_plot_packages(tsne=False):
        console.say("no training_curves.png: pip install 'hf-simclr[plots]' to draw the loss and kNN curves")
        return []
    from ..evaluation.plots import plot_training_curves as plot

    return [path.name] if (path := plot(run.log.path, run.output_dir / "training_curves.png")) else []


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: allocated device memory on CUDA, resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


__all__ = ["LossTracker", "Run", "forward_backward", "peak_memory_mb", "pretrain", "train_step"]
