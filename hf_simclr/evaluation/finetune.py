"""`scripts/finetune.py`: fine-tune a SimCLR encoder with a linear classifier on all or a fraction of the labels.

The protocol of the SimCLR paper (appendix B.5): Nesterov SGD with momentum 0.9, learning rate 0.05 x B / 256 with a
cosine schedule and no warm-up, no weight decay, random crop with resize and random horizontal flip as the only
augmentation; ``--label_fraction 0.01`` / ``0.1`` is the semi-supervised setting, drawn class-balanced with a seed.
With ``--freeze_encoder`` only the classifier trains and the encoder stays in eval mode (linear evaluation with
augmentation; learning rate 0.1 x B / 256). The saved folder loads with ``pipeline("image-classification")``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForImageClassification

from .data import dataset_load_kwargs
from .decode import decode_image
from .evaluate import ImageProcessorCollate, class_balanced_split
from .export import build_image_processor, save_model
from .linear_eval import add_labelled_data_arguments, dataset_names, load_labelled_split
from .optim import build_schedule, scaled_learning_rate

FINETUNE_LOG = "finetune_log.jsonl"


class CropFlipCollate:
    """DataLoader ``collate_fn`` for training rows: decode, random resized crop, horizontal flip, normalise."""

    def __init__(self, size: int, min_scale: float, mean: list[float], std: list[float], image_column: str,
                 label_column: str) -> None:  # fmt: skip
        self.image_column, self.label_column = image_column, label_column
        self.transform = v2.Compose([
            v2.PILToTensor(),
            v2.RandomResizedCrop(size, scale=(min_scale, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ])  # fmt: skip

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        images = [self.transform(decode_image(row[self.image_column])) for row in rows]
        labels = torch.tensor([int(row[self.label_column]) for row in rows], dtype=torch.long)
        return {"pixel_values": torch.stack(images), "labels": labels}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Fine-tune a SimCLR checkpoint for image classification with Accelerate (run with "
        "`accelerate launch scripts/finetune.py ...` for several GPUs or mixed precision).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--model", required=True, help="SimCLR model folder or Hub id (SimCLRModel or SimCLRForImageClassification)")
    add_labelled_data_arguments(parser, train_help="split to train on")
    add("--label_fraction", type=float, default=1.0, help="share of the training labels used, per class (the paper: "
        "0.01, 0.1, 1.0)")  # fmt: skip
    add("--freeze_encoder", action="store_true", help="train only the classifier (linear evaluation)")
    add("--epochs", type=int, default=10, help="passes over the (sampled) training data")
    add("--learning_rate", type=float, default=None, help="default: 0.05 x B / 256 (0.1 x B / 256 when frozen)")
    add("--weight_decay", type=float, default=0.0, help="weight decay (the paper uses none when fine-tuning)")
    add("--per_device_batch_size", type=int, default=64, help="images per process per step")
    add("--min_crop_scale", type=float, default=0.08, help="smallest crop area of the random resized crop")
    add("--num_workers", type=int, default=2, help="DataLoader worker processes per process")
    add("--output_dir", required=True, help="folder for the fine-tuned model, results and card")
    add("--overwrite_output_dir", action="store_true", help="replace a model already in --output_dir")
    add("--seed", type=int, default=0, help="seed of the label sample, the classifier and the augmentation")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if not 0 < args.label_fraction <= 1:
        raise ValueError(f"--label_fraction must be in (0, 1], e.g. 0.01, 0.1 or 1.0; got {args.label_fraction}")
    for name in ("epochs", "per_device_batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.learning_rate is not None and args.learning_rate <= 0:
        raise ValueError(f"--learning_rate must be > 0, got {args.learning_rate}")
    if args.weight_decay < 0 or args.num_workers < 0:
        raise ValueError("--weight_decay and --num_workers must be 0 or more")
    if not 0 < args.min_crop_scale <= 1:
        raise ValueError(f"--min_crop_scale must be in (0, 1], got {args.min_crop_scale}")
    output_dir = Path(args.output_dir)
    if output_dir.is_file():
        raise ValueError(f"--output_dir {output_dir} is a file; choose a folder")
    if Path(args.model).is_dir() and output_dir.resolve() == Path(args.model).resolve():
        raise ValueError("--output_dir is the --model folder; choose a new folder for the fine-tuned model")
    if (output_dir / "config.json").is_file() and not args.overwrite_output_dir:
        raise ValueError(f"--output_dir {output_dir} holds a model; pass --overwrite_output_dir or another folder")
    return args


def _load_model(args: argparse.Namespace, class_names: list[str]) -> torch.nn.Module:
    try:
        config = AutoConfig.from_pretrained(args.model)
    except OSError as error:
        raise ValueError(f"--model {args.model}: no config.json found; pass a SimCLR model folder or Hub id") from error
    if config.model_type != "simclr":
        raise ValueError(
            f"--model {args.model} is a {config.model_type!r} model; fine-tuning needs a SimCLR checkpoint "
            "(use scripts/linear_eval.py to evaluate other backbones)"
        )
    id2label = dict(enumerate(class_names))
    return AutoModelForImageClassification.from_pretrained(
        args.model,
        num_labels=len(class_names),
        id2label=id2label,
        label2id={name: i for i, name in id2label.items()},
        freeze_encoder=args.freeze_encoder,
        ignore_mismatched_sizes=True,  # a classifier checkpoint with another number of classes
    )


@torch.no_grad()
def _evaluate(model: torch.nn.Module, loader: DataLoader, accelerator: Accelerator) -> dict[str, float]:
    model.eval()
    correct1 = correct5 = total = 0
    for batch in tqdm(loader, desc="test", disable=not accelerator.is_local_main_process):
        logits = model(pixel_values=batch["pixel_values"]).logits
        logits, labels = accelerator.gather_for_metrics((logits, batch["labels"]))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == labels).sum().item()
        correct5 += (top == labels[:, None]).any(dim=1).sum().item()
        total += len(labels)
    return {"finetune_top1": correct1 / max(total, 1), "finetune_top5": correct5 / max(total, 1)}


def finetune(args: argparse.Namespace) -> dict[str, float]:
    """Fine-tune as described by ``args`` (see :func:`build_parser`); returns test top-1 / top-5 (fractions)."""
    from .plots import missing_plot_packages, plot_training_curves
    from .results import update_model_card, write_eval_results

    accelerator = Accelerator()
    set_seed(args.seed)
    load_kwargs = dataset_load_kwargs(args.dataset_config)
    train_ds, class_names = load_labelled_split(
        args.dataset, args.train_split, args.image_column, args.label_column, **load_kwargs
    )
    test_ds, _ = load_labelled_split(args.dataset, args.test_split, args.image_column, args.label_column, **load_kwargs)
    kept, _ = class_balanced_split(torch.tensor(train_ds[args.label_column]), args.label_fraction, args.seed)
    train_ds = train_ds.select(kept.tolist())
    model = _load_model(args, class_names)
    config = model.config

    columns = [args.image_column, args.label_column]
    train_loader = DataLoader(
        train_ds.select_columns(columns), batch_size=args.per_device_batch_size, shuffle=True,
        num_workers=args.num_workers, generator=torch.Generator().manual_seed(args.seed),
        collate_fn=CropFlipCollate(config.image_size, args.min_crop_scale, config.image_mean, config.image_std,
                                   *columns),
    )  # fmt: skip
    test_loader = DataLoader(
        test_ds.select_columns(columns), batch_size=args.per_device_batch_size, num_workers=args.num_workers,
        collate_fn=ImageProcessorCollate(build_image_processor(config), *columns),
    )  # fmt: skip
    global_batch = args.per_device_batch_size * accelerator.num_processes
    lr = args.learning_rate or scaled_learning_rate(0.1 if args.freeze_encoder else 0.05, global_batch, "linear")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)
    total_steps = args.epochs * math.ceil(len(train_ds) / global_batch)
    # not prepared: Accelerate's wrapper would step it once per process per optimizer step
    scheduler = build_schedule(optimizer, 0, total_steps)
    model, optimizer, train_loader, test_loader = accelerator.prepare(model, optimizer, train_loader, test_loader)

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    log_path = output_dir / FINETUNE_LOG
    log_path.unlink(missing_ok=True)
    step = 0
    progress = tqdm(total=total_steps, desc="fine-tuning", disable=not accelerator.is_local_main_process)
    for _ in range(args.epochs):
        model.train()  # SimCLRForImageClassification keeps a frozen encoder in eval mode
        for batch in train_loader:
            loss = model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            progress.update()
            if accelerator.is_main_process and (step % 10 == 0 or step == total_steps):
                row = {"step": step, "epoch": step / len(train_loader), "loss": loss.item()}
                row["lr"] = scheduler.get_last_lr()[0]
                with open(log_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
    progress.close()
    metrics = _evaluate(model, test_loader, accelerator)
    accelerator.print(", ".join(f"{key} {100 * value:.2f}%" for key, value in metrics.items()))

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model).eval()
        save_model(unwrapped, output_dir)
        dataset_name, dataset_id = dataset_names(args.dataset)
        setting = "linear classifier on the frozen encoder" if args.freeze_encoder else "fine-tuned end to end"
        labels_used = f"{100 * args.label_fraction:g}% of the labels"
        base = Path(args.model).resolve().name if Path(args.model).exists() else args.model  # no local paths on cards
        task_name = f"Image classification ({setting}, {labels_used})"
        details = {
            "base_model": args.model, "label_fraction": args.label_fraction, "num_train": len(train_ds),
            "freeze_encoder": args.freeze_encoder, "epochs": args.epochs, "learning_rate": lr,
            "global_batch_size": global_batch, "weight_decay": args.weight_decay,
        }  # fmt: skip
        write_eval_results(output_dir, "finetune", dataset_name, metrics, split=args.test_split, details=details)
        update_model_card(
            output_dir, metrics, dataset_name, split=args.test_split, dataset_id=dataset_id, task_name=task_name,
            model_name=output_dir.resolve().name, pipeline_tag="image-classification",
            intro=f"`{base}` {setting} on {len(train_ds)} labelled images ({labels_used} of "
            f"{args.train_split}) with `hf_simclr`'s `scripts/finetune.py`; accuracy in %.",
        )  # fmt: skip
        if missing_plot_packages(tsne=False):
            accelerator.print("no finetune_curves.png: pip install 'hf-simclr[plots]' to draw it")
        else:
            plot_training_curves(log_path, output_dir / "finetune_curves.png", loss_title="Cross-entropy loss")
        accelerator.print(f"model, results and card in {output_dir}")
    accelerator.end_training()
    return metrics


__all__ = ["CropFlipCollate", "build_parser", "finetune", "parse_args"]
