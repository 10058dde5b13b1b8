"""`scripts/finetune_segmentation.py`: semantic segmentation with transformers' UperNet on a SimCLR encoder.

The backbone is a :class:`~hf_simclr.SimCLRBackbone` holding the SimCLR checkpoint's encoder (or, with
``--random_init``, the same architecture freshly initialised: the baseline); UperNet's decoder and auxiliary head are
new. Everything trains end to end with AdamW, a linear warm-up and a cosine decay; training crops are random resized
crops with horizontal flips of image and mask together. Evaluation resizes each held-out image to the training size
(no crop: every pixel counts), upsamples the logits to the mask's own size and reports the mean IoU over the classes
present in the ground truth or the predictions, and the pixel accuracy; pixels of ``IGNORE_INDEX`` count nowhere.

The output folder holds the model (``pipeline("image-segmentation", model=OUT)`` loads it after ``import
hf_simclr``), its image processor, ``eval_results.json``, the model card, the training curves and
``segmentation_examples.png`` (held-out images, their ground truth and the predictions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from tqdm.auto import tqdm
from transformers import AutoConfig, SegformerImageProcessor, UperNetConfig, UperNetForSemanticSegmentation

from ..data import dataset_load_kwargs, decode_image, read_or_replace
from ..data.segmentation import IGNORE_INDEX, class_names, decode_mask, find_held_out, load_segmentation_split
from ..dense_models import load_simclr_backbone
from ..errors import UsageError
from ..hub.card import update_model_card
from ..hub.export import save_model
from ..hub.locate import check_local_or_hub, reaching_the_hub
from ..hub.output_lock import OutputDirLock
from ..hub.records import SEGMENTATION_LOG, RunLog, dataset_names, public_model_name, write_eval_results, writing
from ..modeling_simclr import SimCLRBackbone, eval_image_size
from ..optim import build_schedule
from .arguments import SegmentationArguments
from .arguments import parse_segmentation_args as parse_args
from .finetune import train_supervised, with_sync_batch_norm

EXAMPLES_PLOT, CURVES_PLOT = "segmentation_examples.png", "segmentation_curves.png"


class SegmentationCropFlip(Dataset):
    """Training rows: decode image and mask, random resized crop and horizontal flip of both (nearest for the mask),
    normalise. Mask ids outside the classes become ``IGNORE_INDEX``; an unreadable pair is replaced by another."""

    def __init__(self, rows: Any, size: int, min_scale: float, processor: Any, num_labels: int, reduce_labels: bool):
        self.rows, self.num_labels, self.reduce_labels = rows, num_labels, reduce_labels
        self.crop_flip = v2.Compose([v2.RandomResizedCrop(size, scale=(min_scale, 1.0)), v2.RandomHorizontalFlip()])
        self.normalise = v2.Normalize(processor.image_mean, processor.image_std)

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = read_pair(self.rows[index], self.reduce_labels)
        mask[(mask >= self.num_labels) & (mask != IGNORE_INDEX)] = IGNORE_INDEX
        pixels = tv_tensors.Image(torch.from_numpy(np.array(image)).permute(2, 0, 1))
        pixels, mask = self.crop_flip(pixels, tv_tensors.Mask(torch.from_numpy(mask)))
        return self.normalise(pixels.float() / 255), mask.as_subclass(torch.Tensor)

    def __getitem__(self, index: int) -> dict[str, Any]:
        (pixels, mask), failed = read_or_replace(self.read, index, len(self.rows), f"segmentation-{index}")
        return {"pixel_values": pixels, "labels": mask, "num_failed": failed}


def read_pair(row: dict[str, Any], reduce_labels: bool) -> tuple[Any, np.ndarray]:
    """``(RGB image, mask of class ids)`` of a row; a mask of another size than its image is a ``UsageError``."""
    image, mask = decode_image(row["image"]), decode_mask(row["mask"], reduce_labels)
    if mask.shape != (image.height, image.width):
        raise UsageError(
            f"a mask of {mask.shape[1]}x{mask.shape[0]} px belongs to an image of {image.size[0]}x"
            f"{image.size[1]} px: masks must have their image's size"
        )
    return image, mask


class EvaluationCollate:
    """Held-out rows: the image processor's resize and normalisation; the masks at their own size, in a list."""

    def __init__(self, processor: Any, reduce_labels: bool) -> None:
        self.processor, self.reduce_labels = processor, reduce_labels

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        images, masks = zip(*(read_pair(row, self.reduce_labels) for row in rows), strict=True)
        pixels = self.processor(list(images), return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "masks": [torch.from_numpy(m) for m in masks]}


def confusion_matrix(logits: torch.Tensor, mask: torch.Tensor, num_labels: int) -> torch.Tensor:
    """``(num_labels, num_labels)`` pixel counts (true class, predicted class) of one image, the logits upsampled
    bilinearly to the mask's size; ``IGNORE_INDEX`` pixels left out."""
    logits = torch.nn.functional.interpolate(logits[None], size=mask.shape, mode="bilinear", align_corners=False)
    predicted, mask = logits[0].argmax(0).flatten(), mask.flatten().to(logits.device)
    keep = (mask >= 0) & (mask < num_labels)
    return torch.bincount(mask[keep] * num_labels + predicted[keep], minlength=num_labels**2).view(num_labels, -1)


def segmentation_metrics(confusion: torch.Tensor, class_names: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """``({"mean_iou", "pixel_accuracy"}, IoU per class)`` of a confusion matrix; classes absent from both the ground
    truth and the predictions have no IoU and are left out of the mean."""
    confusion = confusion.double()
    true, predicted, hits = confusion.sum(1), confusion.sum(0), confusion.diagonal()
    union = true + predicted - hits
    present = union > 0
    iou = hits / union.clamp(min=1)
    per_class = {name: iou[i].item() for i, name in enumerate(class_names) if present[i]}
    metrics = {
        "mean_iou": iou[present].mean().item() if present.any() else 0.0,
        "pixel_accuracy": (hits.sum() / confusion.sum().clamp(min=1)).item(),
    }
    return metrics, per_class


def build_model(args: SegmentationArguments, names: list[str]) -> UperNetForSemanticSegmentation:
    """UperNet on the SimCLR encoder of ``--model`` (random with ``--random_init``), a new decoder for ``names``."""
    with reaching_the_hub(f"model {args.model}"):
        try:
            config = AutoConfig.from_pretrained(args.model)
        except OSError as error:
            raise UsageError(f"--model {args.model}: no config.json; pass a SimCLR model folder or Hub id") from error
        if config.model_type != "simclr":
            raise UsageError(f"--model {args.model} is a {config.model_type!r} model; this script needs a SimCLR one")
        stages = args.out_features or config.stage_names[-4:]
        backbone_config = AutoConfig.from_pretrained(args.model, out_features=stages)
        backbone = None if args.random_init else SimCLRBackbone.from_pretrained(args.model, config=backbone_config)
    upernet = UperNetConfig(
        backbone_config=backbone_config,
        hidden_size=args.decoder_hidden_size,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
        loss_ignore_index=IGNORE_INDEX,
    )
    model = UperNetForSemanticSegmentation(upernet)  # a timm-initialised backbone, the baseline's
    if backbone is not None:
        load_simclr_backbone(model, backbone)
    return model


def finetune_segmentation(args: SegmentationArguments) -> dict[str, float]:
    """Train and evaluate as described by ``args``; returns the held-out metrics (fractions in [0, 1])."""
    check_local_or_hub(args.model, "--model")
    accelerator = Accelerator()
    with OutputDirLock(args.output_dir, hold=accelerator.is_main_process):  # before any work
        return _finetune_segmentation(args, accelerator)


def _finetune_segmentation(args: SegmentationArguments, accelerator: Accelerator) -> dict[str, float]:
    set_seed(args.seed)
    load = dataset_load_kwargs(args.dataset_config)
    train_rows = load_segmentation_split(args.dataset, args.train_split, args.image_column, args.mask_column, **load)
    eval_split = find_held_out(args.dataset, args.eval_split)
    test_rows = load_segmentation_split(args.dataset, eval_split, args.image_column, args.mask_column, **load)
    for row in train_rows.select(range(min(8, len(train_rows)))):  # mismatched pairs fail here, in one line
        read_pair(row, args.reduce_labels)
    names = class_names(args.dataset, train_rows, args.id2label, args.reduce_labels, **load)
    model = build_model(args, names)
    backbone = model.backbone.config
    size = args.image_size or eval_image_size(backbone)
    processor = SegformerImageProcessor(
        size={"height": size, "width": size},
        image_mean=list(backbone.image_mean),
        image_std=list(backbone.image_std),
        do_reduce_labels=args.reduce_labels,
    )
    batch_size = min(args.per_device_batch_size, len(train_rows) // accelerator.num_processes)
    if batch_size < 1:
        raise UsageError(f"{len(train_rows)} training images cannot fill one batch on each process")
    crops = SegmentationCropFlip(train_rows, size, args.min_crop_scale, processor, len(names), args.reduce_labels)
    train_loader = DataLoader(
        crops,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,  # a batch of one image breaks BatchNorm
        num_workers=args.num_workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    test_loader = DataLoader(
        test_rows,
        batch_size=args.per_device_batch_size,
        num_workers=args.num_workers,
        collate_fn=EvaluationCollate(processor, args.reduce_labels),
    )
    model = with_sync_batch_norm(model, accelerator.num_processes, accelerator.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    total_steps = args.epochs * (len(train_rows) // (batch_size * accelerator.num_processes))
    scheduler = build_schedule(optimizer, round(args.warmup_ratio * total_steps), total_steps)
    model, optimizer, train_loader, test_loader = accelerator.prepare(model, optimizer, train_loader, test_loader)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(output_dir / SEGMENTATION_LOG)
    log.clear()
    replaced = train_supervised(
        args.epochs, accelerator, model, optimizer, scheduler, train_loader, total_steps, log, desc="segmentation"
    )
    confusion, examples = _evaluate(model, test_loader, accelerator, len(names), args.num_examples)
    metrics, per_class = segmentation_metrics(confusion, names)
    accelerator.print(
        f"mean IoU {100 * metrics['mean_iou']:.2f}%, pixel accuracy {100 * metrics['pixel_accuracy']:.2f}%"
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with writing(output_dir, "the segmentation model"):
            save_model(accelerator.unwrap_model(model).eval(), output_dir)
            processor.save_pretrained(output_dir)
        details = {
            "base_model": public_model_name(args.model),  # no local paths in published records
            "random_init": args.random_init,
            "decoder": "UperNet",
            "out_features": backbone.out_features,
            "image_size": size,
            "num_train": len(train_rows),
            "epochs": args.epochs,
            "learning_rate": args.learning_rate,
            "global_batch_size": batch_size * accelerator.num_processes,
            "skipped_images": replaced,
            "iou_per_class": per_class,
        }
        _write_results(args, eval_split, metrics, details, log, examples, names, processor)
        accelerator.print(f"model, results and card in {output_dir}")
    accelerator.end_training()
    return metrics


@torch.no_grad()
def _evaluate(
    model: torch.nn.Module, loader: DataLoader, accelerator: Accelerator, num_labels: int, num_examples: int
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, np.ndarray, np.ndarray]]]:
    """The held-out confusion matrix (summed over processes, each image counted once) and the first
    ``num_examples`` (image, mask, prediction) of the main process."""
    model.eval()
    confusion = torch.zeros(num_labels, num_labels, dtype=torch.long, device=accelerator.device)
    examples: list[tuple[torch.Tensor, np.ndarray, np.ndarray]] = []
    for batch in tqdm(loader, desc="evaluation", disable=not accelerator.is_local_main_process):
        logits = model(pixel_values=batch["pixel_values"]).logits
        per_image = torch.stack(
            [confusion_matrix(lg, m, num_labels) for lg, m in zip(logits, batch["masks"], strict=True)]
        )
        confusion += accelerator.gather_for_metrics(per_image).sum(0)
        for pixels, mask, lg in zip(batch["pixel_values"], batch["masks"], logits, strict=True):
            if len(examples) < num_examples:
                up = torch.nn.functional.interpolate(lg[None], size=mask.shape, mode="bilinear", align_corners=False)
                examples.append((pixels.cpu(), mask.cpu().numpy(), up[0].argmax(0).cpu().numpy()))
    return confusion.cpu(), examples


def _write_results(
    args: SegmentationArguments,
    split: str,
    metrics: dict[str, float],
    details: dict[str, Any],
    log: RunLog,
    examples: list,
    names: list[str],
    processor: Any,
) -> None:
    """``eval_results.json``, the card (an image-segmentation model), the training curves and the examples."""
    from .plots import missing_plot_packages, plot_segmentation_examples, plot_training_curves

    output_dir = Path(args.output_dir)
    dataset_name, dataset_id = dataset_names(args.dataset)
    write_eval_results(
        output_dir, "segmentation", dataset_name, metrics, split=split, dataset_id=dataset_id, details=details
    )
    update_model_card(output_dir, model_name=output_dir.resolve().name, pipeline_tag="image-segmentation")
    if missing_plot_packages(tsne=False):
        print(f"no {EXAMPLES_PLOT} or {CURVES_PLOT}: pip install 'hf-simclr[plots]' to draw them")
        return
    plot_training_curves(log.path, output_dir / CURVES_PLOT, loss_title="Cross-entropy loss")
    if examples:
        mean_std = (processor.image_mean, processor.image_std)
        plot_segmentation_examples(examples, names, output_dir / EXAMPLES_PLOT, *mean_std)


__all__ = [
    "EvaluationCollate",
    "SegmentationArguments",
    "SegmentationCropFlip",
    "build_model",
    "confusion_matrix",
    "finetune_segmentation",
    "parse_args",
    "segmentation_metrics",
]
