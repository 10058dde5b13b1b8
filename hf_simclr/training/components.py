"""The pieces a pretraining run is built from: batches of two views, the model, and its optimiser and schedule."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch
from timm.layers import convert_sync_batchnorm
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader

from ..augment import AugmentPreset, TwoViewTransform, get_preset
from ..configuration_simclr import SimCLRConfig
from ..data import (
    EpochBatchSampler,
    ReadableOnly,
    TwoViewDataset,
    apply_transform,
    collate_two_views,
    collate_views,
    shard_for_process,
)
from ..errors import UsageError
from ..modeling_simclr import SimCLRModel
from ..optim import build_lars, build_schedule, scaled_learning_rate
from .arguments import PretrainArguments
from .console import ignore_stop_signals


@dataclass
class TrainingData:
    """This process's batches of two views and the run's length in optimizer steps."""

    loader: DataLoader
    sampler: EpochBatchSampler | None  # None for a stream, which reshuffles its shards each epoch instead
    steps_per_epoch: int
    total_steps: int
    global_batch: int
    workers: int


def num_workers(args: PretrainArguments, num_processes: int) -> int:
    """``--num_workers``, or the cores available to each process (at most 16)."""
    if args.num_workers is not None:
        return args.num_workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(16, cores // num_processes))


def loader_kwargs(workers: int, device: torch.device, collate: Any = collate_views) -> dict:
    kwargs = {"num_workers": workers, "pin_memory": device.type == "cuda", "collate_fn": collate}
    if workers:
        kwargs.update(prefetch_factor=4, worker_init_fn=ignore_stop_signals)
    return kwargs


def augment_recipe(args: PretrainArguments) -> AugmentPreset:
    """The ``--augment`` recipe with ``--min_crop_scale`` and ``--jitter_strength`` applied."""
    recipe = get_preset(args.augment)
    if args.min_crop_scale is not None:
        recipe = dataclasses.replace(recipe, crop_scale=(args.min_crop_scale, 1.0))
    if args.jitter_strength is not None:
        recipe = dataclasses.replace(recipe, jitter_strength=args.jitter_strength)
    return recipe


def build_training_data(
    args: PretrainArguments, train_data: Any, rank: int, world: int, device: torch.device
) -> TrainingData:
    """The DataLoader of two-view batches for process ``rank`` of ``world``: a seeded per-epoch order over a
    map-style dataset (resumable mid-epoch), or this process's shards of a stream."""
    crop = TwoViewTransform.from_preset(
        augment_recipe(args),
        size=args.image_size,
        image_column=args.image_column,
        label_column=None,
        seed=args.seed + rank,
    )
    workers = num_workers(args, world)
    global_batch = args.per_device_batch_size * world
    if args.streaming:
        loader, steps_per_epoch = _stream_loader(args, train_data, crop, rank, world, device, workers)
        sampler = None
    else:
        views = TwoViewDataset(train_data, crop, args.seed)
        sampler = EpochBatchSampler(len(views), args.per_device_batch_size, rank, world, args.seed)
        loader = DataLoader(views, batch_sampler=sampler, **loader_kwargs(workers, device, collate_two_views))
        steps_per_epoch = sampler.steps_per_epoch
    total_steps = args.max_steps or args.epochs * steps_per_epoch
    return TrainingData(loader, sampler, steps_per_epoch, total_steps, global_batch, workers)


def _stream_loader(
    args: PretrainArguments,
    train_data: Any,
    crop: TwoViewTransform,
    rank: int,
    world: int,
    device: torch.device,
    workers: int,
) -> tuple[DataLoader, int]:
    if args.max_steps is None:
        raise UsageError("a streamed dataset has no known length: give --max_steps")
    stream = apply_transform(shard_for_process(train_data.shuffle(seed=args.seed), rank, world), ReadableOnly(crop))
    loader = DataLoader(
        stream,
        batch_size=args.per_device_batch_size,
        drop_last=True,  # with unreadable images left out before batching: every batch is full
        **loader_kwargs(min(workers, stream.num_shards), device, collate_two_views),
    )
    # an epoch from the split's size where the dataset card records it; else --max_steps spans --epochs epochs,
    # so that warm-up keeps its share of the run
    info = getattr(train_data, "info", None)
    split_info = info.splits.get(args.train_split) if info is not None and info.splits else None
    num_examples = split_info.num_examples if split_info is not None else 0
    global_batch = args.per_device_batch_size * world
    steps_per_epoch = max(1, num_examples // global_batch if num_examples else args.max_steps // args.epochs)
    return loader, steps_per_epoch


def build_model(args: PretrainArguments, num_processes: int, device: torch.device) -> SimCLRModel:
    """A freshly initialised SimCLR model as ``args`` describe, ready for the accelerator."""
    config = SimCLRConfig(
        backbone=args.backbone,
        backbone_kwargs=args.backbone_kwargs,
        image_size=args.image_size,
        eval_image_size=args.eval_image_size,
        temperature=args.temperature,
        projection_dim=args.projection_dim,
        projection_hidden_dim=args.projection_hidden_dim,
        projection_layers=args.projection_layers,
        projection_batch_norm=args.projection_batch_norm,
        cifar_stem=bool(args.cifar_stem),
    )
    model = SimCLRModel(config)
    # map-style data replaces unreadable images, so every process has a full batch; a stream drops them instead
    model.loss_fn.equal_batch_sizes = not args.streaming
    if num_processes > 1 and device.type != "cpu":
        # global BN: statistics over all processes; timm's converter keeps the activations fused into its BN layers
        model = convert_sync_batchnorm(model)
    return model.to(memory_format=torch.channels_last)


def build_optimizer(
    model: torch.nn.Module, args: PretrainArguments, data: TrainingData
) -> tuple[Optimizer, LambdaLR, float]:
    """LARS at the batch-scaled learning rate, its warm-up + cosine schedule, and that learning rate."""
    lr = scaled_learning_rate(args.learning_rate, data.global_batch, args.lr_scaling)
    optimizer = build_lars(model, lr=lr, weight_decay=args.weight_decay)
    warmup_steps = min(data.total_steps, round(args.warmup_epochs * data.steps_per_epoch))
    return optimizer, build_schedule(optimizer, warmup_steps, data.total_steps), lr


__all__ = [
    "TrainingData",
    "augment_recipe",
    "build_model",
    "build_optimizer",
    "build_training_data",
    "loader_kwargs",
    "num_workers",
]
