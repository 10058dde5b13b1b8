"""SimCLR pretraining with Accelerate: one loop for a laptop CPU, one GPU, or many GPUs on many machines."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from timm.layers import convert_sync_batchnorm
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from .augment import EvalTransform, SimCLRGPUAugment, TwoViewTransform, collate_views, get_preset
from .benchmark import peak_memory_mb
from .checkpoint import TrainState, resolve_checkpoint, save_checkpoint
from .configuration_simclr import SimCLRConfig
from .data import apply_transform, dataset_load_kwargs, find_label_column, load_image_dataset, shard_for_process
from .evaluate import extract_features, knn_accuracy
from .grad_cache import grad_cache_step
from .modeling_simclr import SimCLRModel
from .optim import build_lars, build_schedule, scaled_learning_rate
from .train_args import PretrainArguments

logger = logging.getLogger(__name__)

TRAIN_LOG = "train_log.jsonl"
CHECKPOINTS = "checkpoints"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TwoViewDataset(Dataset):
    """Two random views of each image whose crops depend only on (seed, epoch, index).

    The same sample gets the same views whatever the number of workers or processes, and a resumed run sees
    exactly the views the interrupted one would have. An unreadable image is replaced by another one drawn from the
    same seed, so every batch keeps its size (a contrastive batch must match across processes and chunks);
    `num_failed` counts the replacements.
    """

    max_replacements = 16

    def __init__(self, dataset: Any, transform: TwoViewTransform, seed: int) -> None:
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        key = f"{self.seed}-{self.epoch}-{index}"
        rng = random.Random(key)
        sample = index
        for failed in range(self.max_replacements + 1):
            try:
                view_1, view_2 = self.transform.process(self.dataset[sample][self.transform.image_column], rng)
                return {"pixel_values": view_1, "pixel_values_2": view_2, "num_failed": failed}
            except Exception as error:  # a corrupt file must not stop a DataLoader worker
                logger.debug("unreadable image %d (%s: %s)", sample, type(error).__name__, error)
                sample = random.Random(f"{key}-{failed}").randrange(len(self.dataset))
        raise RuntimeError(
            f"{self.max_replacements + 1} images in a row could not be decoded: most of the dataset is unreadable; "
            "check --dataset and --image_column"
        )


def collate_two_views(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """`collate_views`, with `num_skipped` counting the unreadable images `TwoViewDataset` replaced."""
    batch = collate_views(samples)
    batch["num_skipped"] = batch["num_skipped"] + sum(s.get("num_failed", 0) for s in samples)
    return batch


class EpochBatchSampler(Sampler[list[int]]):
    """This process's batches of a seeded per-epoch permutation; disjoint across processes, resumable mid-epoch."""

    def __init__(self, num_samples: int, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.num_samples, self.batch_size, self.rank, self.world_size, self.seed = (
            num_samples,
            batch_size,
            rank,
            world_size,
            seed,
        )
        self.steps_per_epoch = num_samples // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the dataset has {num_samples} images, fewer than one global batch of {batch_size * world_size}; "
                "lower --per_device_batch_size"
            )
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step

    def __iter__(self):
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        for step in range(self.start_step, self.steps_per_epoch):
            start = (step * self.world_size + self.rank) * self.batch_size
            yield order[start : start + self.batch_size].tolist()


def _num_workers(args: PretrainArguments, num_processes: int) -> int:
    if args.num_workers is not None:
        return args.num_workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(16, cores // num_processes))


def _loader_kwargs(workers: int, device: torch.device, collate: Any = collate_views) -> dict:
    kwargs = {"num_workers": workers, "pin_memory": device.type == "cuda", "collate_fn": collate}
    if workers:
        kwargs.update(prefetch_factor=4)
    return kwargs


def _monitor_data(args: PretrainArguments, train_data: Any, seed: int) -> tuple[Any, Any] | str:
    """Labelled (memory bank, held-out) splits for the kNN monitor, or the reason there is none."""
    if args.streaming:
        return "the dataset is streamed"
    labels = find_label_column(train_data, args.label_column)
    if labels is None:
        return "the training data has no ClassLabel column (see --label_column)"
    column = labels[0]
    held_out = None
    for split in [args.eval_split] if args.eval_split else ["validation", "test"]:
        try:
            held_out = load_image_dataset(
                args.dataset,
                split=split,
                image_column=args.image_column,
                check=0,
                **dataset_load_kwargs(args.dataset_config),
            )
            break
        except (ValueError, KeyError) as error:
            if args.eval_split:
                raise ValueError(f"--eval_split {split}: {error}") from error
    if held_out is None:
        return "the dataset has no 'validation' or 'test' split (see --eval_split)"
    if column not in held_out.column_names or min(held_out.select(range(min(1000, len(held_out))))[column]) < 0:
        return f"the held-out split has no labels in column {column!r}"  # e.g. ImageNet's test split: all -1
    # a shuffled sample: a class-sorted image folder's first rows would hold only a few classes
    bank = train_data.shuffle(seed=seed).select(range(min(len(train_data), 50_000)))
    if column != "label":
        bank, held_out = bank.rename_column(column, "label"), held_out.rename_column(column, "label")
    return bank, held_out


def _knn_monitor(
    model: SimCLRModel,
    monitor: tuple[Any, Any],
    args: PretrainArguments,
    augment: SimCLRGPUAugment,
    device: torch.device,
) -> dict[str, float]:
    def features(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
        transformed = data.with_transform(EvalTransform(size=args.image_size, image_column=args.image_column))
        loader = DataLoader(transformed, batch_size=256, **_loader_kwargs(_num_workers(args, 1), device))
        autocast = torch.bfloat16 if device.type == "cuda" else None
        return extract_features(
            model, loader, device=device, preprocess=augment.normalize, autocast_dtype=autocast, progress=False
        )

    bank_features, bank_labels = features(monitor[0])
    test_features, test_labels = features(monitor[1])
    return knn_accuracy(bank_features, bank_labels, test_features, test_labels, device=device)


def _log_row(output_dir: Path, row: dict) -> None:
    with open(output_dir / TRAIN_LOG, "a") as f:
        f.write(json.dumps(row) + "\n")


def pretrain(args: PretrainArguments) -> dict[str, Any]:
    """Run SimCLR pretraining as `args` describe; returns the final metrics. Saves the model to `args.output_dir`."""
    args = args.resolved()
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        log_with=None if args.report_to == "none" else args.report_to, project_dir=str(output_dir)
    )
    args.check_output_dir(accelerator.num_processes)
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    set_seed(args.seed)  # the same initial weights on every process

    train_data = load_image_dataset(
        args.dataset,
        split=args.train_split,
        image_column=args.image_column,
        streaming=args.streaming,
        **dataset_load_kwargs(args.dataset_config),
    )
    crop = TwoViewTransform.from_preset(
        args.augment, size=args.image_size, image_column=args.image_column, label_column=None, seed=args.seed + rank
    )
    workers = _num_workers(args, world)
    global_batch = args.per_device_batch_size * world
    if args.streaming:
        if args.max_steps is None:
            raise ValueError("a streamed dataset has no known length: give --max_steps")
        stream = apply_transform(shard_for_process(train_data.shuffle(seed=args.seed), rank, world), crop)
        loader = DataLoader(
            stream,
            batch_size=args.per_device_batch_size,
            drop_last=True,
            **_loader_kwargs(min(workers, stream.num_shards), device),
        )
        sampler = None
        # an epoch from the split's size where the dataset card records it; else --max_steps spans --epochs epochs,
        # so that warm-up keeps its share of the run
        info = getattr(train_data, "info", None)
        split_info = info.splits.get(args.train_split) if info is not None and info.splits else None
        num_examples = split_info.num_examples if split_info is not None else 0
        steps_per_epoch = max(1, num_examples // global_batch if num_examples else args.max_steps // args.epochs)
    else:
        views = TwoViewDataset(train_data, crop, args.seed)
        sampler = EpochBatchSampler(len(views), args.per_device_batch_size, rank, world, args.seed)
        loader = DataLoader(views, batch_sampler=sampler, **_loader_kwargs(workers, device, collate_two_views))
        steps_per_epoch = sampler.steps_per_epoch
    total_steps = args.max_steps or args.epochs * steps_per_epoch
    monitor = _monitor_data(args, train_data, args.seed) if accelerator.is_main_process else None
    if isinstance(monitor, str):
        accelerator.print(f"kNN monitor off: {monitor}")
        monitor = None

    config = SimCLRConfig(
        backbone=args.backbone,
        image_size=args.image_size,
        temperature=args.temperature,
        projection_dim=args.projection_dim,
        projection_hidden_dim=args.projection_hidden_dim,
        projection_layers=args.projection_layers,
    )
    model = SimCLRModel(config)
    # map-style data replaces unreadable images, so every process has a full batch; a stream drops them instead
    model.loss_fn.equal_batch_sizes = not args.streaming
    if world > 1 and device.type != "cpu":
        # global BN: statistics over all processes; timm's converter keeps the activations fused into its BN layers
        model = convert_sync_batchnorm(model)
    model = model.to(memory_format=torch.channels_last)
    lr = scaled_learning_rate(args.learning_rate, global_batch, args.lr_scaling)
    optimizer = build_lars(model, lr=lr, weight_decay=args.weight_decay)
    scheduler = build_schedule(optimizer, min(total_steps, round(args.warmup_epochs * steps_per_epoch)), total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    if args.compile:
        # after DDP wrapping, so the compiler can overlap gradient all-reduces with the backward pass
        model = torch.compile(model)
    augment = SimCLRGPUAugment(
        get_preset(args.augment), mean=config.image_mean, std=config.image_std, compile_ops=args.compile
    ).to(device)
    state = TrainState()
    # The scheduler is stepped by hand once per optimizer step (Accelerate's wrapper would step it per process).
    accelerator.register_for_checkpointing(state, scheduler)

    checkpoint_root = output_dir / CHECKPOINTS
    if args.resume_from_checkpoint:
        path = resolve_checkpoint(args.resume_from_checkpoint, checkpoint_root)
        accelerator.load_state(str(path))
        accelerator.print(f"resumed from {path} at step {state.step}")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "training_args.json").write_text(json.dumps(asdict(args), indent=2) + "\n")
        if state.step == 0:
            for stale in (TRAIN_LOG, "results.json"):
                (output_dir / stale).unlink(missing_ok=True)
            shutil.rmtree(checkpoint_root, ignore_errors=True)  # --overwrite_output_dir: the old run's checkpoints
    accelerator.init_trackers("simclr", config={k: v for k, v in asdict(args).items() if v is not None})

    accelerator.print(
        f"SimCLR {args.backbone} @ {args.image_size}px: {total_steps} steps of {global_batch} images "
        f"({world} process(es)), lr {lr:.4g}, {workers} data workers per process"
    )
    progress = tqdm(total=total_steps, initial=state.step, disable=not accelerator.is_main_process, unit="step")
    loss_sum = torch.zeros((), device=device)
    first_bad_step = torch.full((), -1, device=device, dtype=torch.long)
    last_log_time, last_log_step, metrics = time.perf_counter(), state.step, {}

    def check_finite() -> None:
        bad = int(accelerator.reduce(first_bad_step, reduction="max").item())
        if bad >= 0:
            raise NonFiniteLossError(
                f"the loss became non-finite at step {bad}; the last good checkpoint is kept in {checkpoint_root}. "
                "Lower --learning_rate or raise --temperature"
            )

    def unwrapped() -> SimCLRModel:
        model_ = accelerator.unwrap_model(model)
        return getattr(model_, "_orig_mod", model_)

    if monitor and state.step == 0:
        # the same encoder at random initialisation: the baseline the pretrained features must beat
        state.random_init = {
            f"{k}_random_init": v for k, v in _knn_monitor(unwrapped(), monitor, args, augment, device).items()
        }
        _log_row(output_dir, {"step": 0, "epoch": 0.0, **state.random_init})
        accelerator.print("random init: " + ", ".join(f"{k} {v:.4f}" for k, v in state.random_init.items()))

    try:
        while state.step < total_steps:
            epoch, start = divmod(state.step, steps_per_epoch)
            if sampler is not None:
                sampler.set_epoch(epoch, start)
            loader.dataset.set_epoch(epoch)  # streamed data: a new shuffle of the shards each epoch
            model.train()
            for batch in loader:
                x1 = batch["pixel_values"].to(device, non_blocking=True)
                x2 = batch["pixel_values_2"].to(device, non_blocking=True)
                state.skipped_images += int(batch["num_skipped"])
                # augmentation parameters depend only on (seed, step, process): resumable and independent per process
                generator = torch.Generator().manual_seed(args.seed * 1_000_003 + state.step * 1009 + rank)
                with torch.no_grad():
                    v1, v2 = augment(x1, generator), augment(x2, generator)
                if args.grad_cache_chunk:
                    loss = grad_cache_step(model, v1, v2, args.grad_cache_chunk, accelerator)
                else:
                    loss = model(pixel_values=v1, pixel_values_2=v2).loss
                    accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                progress.update(1)
                loss = loss.detach()
                loss_sum += loss
                first_bad_step = torch.where(torch.isfinite(loss) | (first_bad_step >= 0), first_bad_step, state.step)

                if state.step % args.log_every == 0 or state.step == total_steps:
                    check_finite()
                    mean_loss = accelerator.reduce(loss_sum, reduction="mean").item() / (state.step - last_log_step)
                    now = time.perf_counter()
                    views_per_s = 2 * global_batch * (state.step - last_log_step) / (now - last_log_time)
                    metrics = {
                        "loss": mean_loss,
                        "lr": scheduler.get_last_lr()[0],
                        "views_per_s": views_per_s,
                        "skipped_images": state.skipped_images,
                        "peak_memory_mb": peak_memory_mb(device),
                    }
                    accelerator.log(metrics, step=state.step)
                    progress.set_postfix(
                        loss=f"{mean_loss:.4f}", lr=f"{metrics['lr']:.3g}", views_s=f"{views_per_s:.0f}"
                    )
                    if accelerator.is_main_process:
                        _log_row(output_dir, {"step": state.step, "epoch": state.step / steps_per_epoch, **metrics})
                    loss_sum.zero_()
                    last_log_time, last_log_step = now, state.step
                if args.checkpointing_steps and state.step % args.checkpointing_steps == 0:
                    check_finite()
                    save_checkpoint(accelerator, checkpoint_root, state.step, args.checkpoints_total_limit)
                epoch_done, epoch_rest = divmod(state.step, steps_per_epoch)
                if monitor and args.eval_every and epoch_rest == 0 and epoch_done % args.eval_every == 0:
                    knn = _knn_monitor(unwrapped(), monitor, args, augment, device)
                    accelerator.log(knn, step=state.step)
                    _log_row(output_dir, {"step": state.step, "epoch": state.step / steps_per_epoch, **knn})
                    progress.write(f"epoch {epoch_done}: " + ", ".join(f"{k} {v:.4f}" for k, v in knn.items()))
                if state.step >= total_steps:
                    break
    finally:
        progress.close()  # before any error message, which then gets its own line
    check_finite()
    if not args.checkpointing_steps or state.step % args.checkpointing_steps:
        save_checkpoint(accelerator, checkpoint_root, state.step, args.checkpoints_total_limit)
    if state.skipped_images:
        accelerator.print(f"skipped {state.skipped_images} unreadable images")
    results = {**metrics, "steps": state.step, "global_batch_size": global_batch, "learning_rate": lr}
    if accelerator.is_main_process:
        if monitor:
            results.update(_knn_monitor(unwrapped(), monitor, args, augment, device), **state.random_init)
            _log_row(
                output_dir,
                {
                    "step": state.step,
                    "epoch": state.step / steps_per_epoch,
                    **{k: v for k, v in results.items() if k.startswith("knn")},
                },
            )
        _finish(unwrapped(), args, results, output_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


def _finish(model: SimCLRModel, args: PretrainArguments, results: dict, output_dir: Path) -> None:
    """Save the model, its card and results; export and push if asked."""
    from .export import export_timm_encoder, save_model
    from .model_card import build_model_card

    # a fresh model holds plain BatchNorm (not SyncBatchNorm) and the default memory format
    clean = SimCLRModel(model.config)
    clean.load_state_dict(model.state_dict())
    model = clean.eval()
    save_model(model, output_dir)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    training = {
        "dataset": args.dataset or "embedded Fashion-MNIST subset",
        "preset": args.preset,
        "epochs": args.epochs if not args.max_steps else None,
        "steps": results.get("steps"),
        "global batch size": results.get("global_batch_size"),
        "image size": args.image_size,
        "optimizer": "LARS (momentum 0.9, trust coefficient 0.001)",
        "learning rate": results.get("learning_rate"),
        "weight decay": args.weight_decay,
        "temperature": args.temperature,
        "final NT-Xent loss": round(results["loss"], 4) if "loss" in results else None,
        "kNN top-1 (k=20) of the same encoder at random initialisation": (
            f"{100 * results['knn_top1_k20_random_init']:.1f} %" if "knn_top1_k20_random_init" in results else None
        ),
    }
    card = build_model_card(
        args.hub_model_id or str(output_dir),  # the loading examples then work as printed
        model.config.to_dict(),
        {k: v for k, v in training.items() if v},
        {k: 100 * v for k, v in results.items() if k.startswith("knn_top1") and not k.endswith("random_init")},
        args.dataset or "Fashion-MNIST (embedded subset)",
        eval_split=args.eval_split or "test",
        feature_dim=model.num_features,
        timm_repo=f"{args.hub_model_id}-timm" if args.timm_export and args.hub_model_id else None,
    )
    card.save(output_dir / "README.md")
    if args.timm_export:
        export_timm_encoder(model, output_dir / "timm")
    if args.push_to_hub:
        from .hub import push_folder_to_hub, push_timm_folder_to_hub

        push_folder_to_hub(output_dir, args.hub_model_id, private=args.hub_private)
        if args.timm_export:
            push_timm_folder_to_hub(output_dir / "timm", f"{args.hub_model_id}-timm", private=args.hub_private)
