"""`scripts/finetune.py`: fine-tune a SimCLR encoder with a linear classifier on all or a fraction of the labels.

The recipe (optimiser, learning rate, weight decay, where the classifier sits and how it starts) is SimCLRv2's for a
model with the v2 projection head, SimCLR's for any other, and linear evaluation's with ``--freeze_encoder``
(:mod:`.finetune_recipe`); flags override each setting. All of them train with a cosine schedule and no warm-up,
random crop with resize and random horizontal flip as the only augmentation; ``--label_fraction 0.01`` / ``0.1`` is
the semi-supervised setting, drawn class-balanced with a seed, trained for 60 / 30 epochs (SimCLRv2 trains 30
epochs on all the labels too; linear evaluation 90). With ``--freeze_encoder`` only the classifier trains and the
encoder stays in eval mode. Incomplete last batches are dropped (a batch of one image would break BatchNorm); on
several GPUs BatchNorm is synchronised across them (global BN, as the official code). Training, the test and the
saved image processor share one resolution, ``--image_size`` (default: the model's training resolution), so the saved
folder loads with ``pipeline("image-classification")`` and gives the accuracy reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from timm.layers import convert_sync_batchnorm
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForImageClassification

from ..data import crop_resize, decode_image, read_or_replace
from ..errors import UsageError
from ..hub.card import update_model_card
from ..hub.export import build_image_processor, save_model
from ..hub.locate import check_local_or_hub, check_model_folder, reaching_the_hub
from ..hub.output_lock import OutputDirLock
from ..hub.records import FINETUNE_LOG, RunLog, dataset_names, public_model_name, write_eval_results, writing
from ..optim import build_lars, build_schedule
from .arguments import FinetuneArguments
from .arguments import parse_finetune_args as parse_args
from .features import ImageProcessorCollate
from .finetune_recipe import FinetuneRecipe, describe_recipe, finetune_recipe
from .linear_eval import load_train_and_held_out
from .linear_probe import class_balanced_split
from .metrics import check_classes, left_out, not_reported_line, top5_defined


class CropFlipDataset(Dataset):
    """Training rows of fine-tuning: decode, random resized crop, horizontal flip, normalise; and the label.

    The crop is drawn from the image's size before its pixels are decoded, so a JPEG whose crop keeps at least twice
    ``size`` pixels per side is decoded at 1/2, 1/4 or 1/8 scale (never below ``size``) and the crop taken from that;
    any other image is decoded whole and transformed exactly as torchvision's ``RandomResizedCrop`` alone would. An
    unreadable image is replaced by another row drawn from ``seed`` (as in pretraining), so batches keep their size;
    ``num_failed`` counts the replacements.
    """

    def __init__(
        self,
        rows: Any,
        size: int,
        min_scale: float,
        mean: list[float],
        std: list[float],
        image_column: str,
        label_column: str,
        seed: int,
    ) -> None:
        self.rows, self.image_column, self.label_column, self.seed = rows, image_column, label_column, seed
        self.size = size
        self.crop = v2.RandomResizedCrop(
            size, scale=(min_scale, 1.0), interpolation=v2.InterpolationMode.BICUBIC, antialias=True
        )
        self.flip_normalise = v2.Compose(
            [v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
        )

    def __len__(self) -> int:
        return len(self.rows)

    def crop_flip(self, value: Any) -> torch.Tensor:
        """One image's random crop, flip and normalisation (torch's RNG draws the crop, then the flip)."""
        drawn: dict[str, Any] = {}

        def max_reduction(width: int, height: int) -> float:
            # a (0, H, W) tensor has the image's size and no pixels: the crop is drawn as RandomResizedCrop draws it
            drawn.update(self.crop.make_params([torch.empty(0, height, width)]), size=(width, height))
            return min(drawn["height"], drawn["width"]) / self.size

        image = decode_image(value, max_reduction)
        (width, height), crop = drawn.pop("size"), drawn
        if image.size == (width, height):
            pixels = self.crop.transform(v2.functional.pil_to_tensor(image), crop)  # as RandomResizedCrop alone
        else:  # decoded at reduced scale: the same crop in that image's pixels, at sub-pixel precision
            box = (crop["left"], crop["top"], crop["width"], crop["height"])
            pixels = crop_resize(image, box, (image.width / width, image.height / height), self.size)
        return self.flip_normalise(pixels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        def crop_flip(sample: int) -> tuple[torch.Tensor, int]:
            row = self.rows[sample]
            return self.crop_flip(row[self.image_column]), int(row[self.label_column])

        (pixels, label), failed = read_or_replace(crop_flip, index, len(self.rows), f"{self.seed}-{index}")
        return {"pixel_values": pixels, "labels": label, "num_failed": failed}


def load_model_to_finetune(args: FinetuneArguments, class_names: list[str]) -> tuple[torch.nn.Module, FinetuneRecipe]:
    """The classifier model to fine-tune and its recipe (:mod:`.finetune_recipe`): the encoder and the kept head layers
    from ``--model``, and a new classifier unless ``--reuse_classifier`` (:func:`_start_classifier`)."""
    try:
        with reaching_the_hub(f"model {args.model}"):
            config = AutoConfig.from_pretrained(args.model)
    except OSError as error:
        raise UsageError(f"--model {args.model}: no config.json found; pass a SimCLR model folder or Hub id") from error
    if config.model_type != "simclr":
        raise UsageError(
            f"--model {args.model} is a {config.model_type!r} model; fine-tuning needs a SimCLR checkpoint "
            "(use scripts/linear_eval.py to evaluate other backbones)"
        )
    recipe = finetune_recipe(config, args)
    id2label = dict(enumerate(class_names))
    try:
        with reaching_the_hub(f"model {args.model}"):
            model, loading = AutoModelForImageClassification.from_pretrained(
                args.model,
                num_labels=len(class_names),
                id2label=id2label,
                label2id={name: i for i, name in id2label.items()},
                freeze_encoder=args.freeze_encoder,
                classifier_projection_layers=recipe.classifier_projection_layers,
                ignore_mismatched_sizes=True,  # a classifier checkpoint with another number of classes
                output_loading_info=True,
            )
    except OSError as error:  # no weights file, or a truncated one
        reason = str(error).strip().splitlines()[0]
        raise UsageError(
            f"--model {args.model}: {reason}; pass a folder written by save_pretrained or a Hub id"
        ) from error
    head = sorted(key for key in loading["missing_keys"] if key.startswith("projection_head."))
    if head:  # loading would leave them random, with a warning only
        raise UsageError(
            f"--model {args.model} has no weights for the projection-head layers the classifier would sit on (e.g. "
            f"{head[0]}): it was saved without its head; pass --classifier_projection_layers 0"
        )
    _start_classifier(model, recipe, config, loading, class_names, args.model)
    return model, recipe


def _start_classifier(
    model: torch.nn.Module, recipe: FinetuneRecipe, saved: Any, loading: dict, class_names: list[str], source: str
) -> None:
    """Give ``model`` the classifier it starts from: a new one, initialised as the recipe says, unless
    ``--reuse_classifier`` asks for the checkpoint's own, which must then sit where this run places the classifier and
    know the same classes.

    A checkpoint's classifier is never reused silently: a released linear-evaluation classifier trained on h has the
    shape of one on the first head layer of a 1x network, so loading alone would start the head-layer classifier from
    weights trained for another input.
    """
    problems = {*loading["missing_keys"], *(entry[0] for entry in loading["mismatched_keys"])}
    loaded = not any(key.startswith("classifier.") for key in problems)
    saved_names = [str(saved.id2label[i]) for i in sorted(saved.id2label)] if saved.id2label else []
    saved_layers = getattr(saved, "classifier_projection_layers", 0)
    if recipe.reuse_classifier:
        if not loaded:
            raise UsageError(
                f"--reuse_classifier: --model {source} holds no classifier for {len(class_names)} classes; drop "
                "--reuse_classifier to start from a new one"
            )
        if saved_layers != recipe.classifier_projection_layers:
            raise UsageError(
                f"--reuse_classifier: the classifier of --model {source} sits {_place(saved_layers)}, this run "
                f"places it {_place(recipe.classifier_projection_layers)}; pass --classifier_projection_layers "
                f"{saved_layers}, or drop --reuse_classifier"
            )
        generic = all(name == f"LABEL_{i}" for i, name in enumerate(saved_names))
        if not generic and saved_names != class_names:
            theirs, ours = ", ".join(saved_names[:3]), ", ".join(class_names[:3])
            raise UsageError(
                f"--reuse_classifier: the classifier of --model {source} knows other classes ({theirs}, ...) than the "
                f"dataset ({ours}, ...); drop --reuse_classifier"
            )
        return
    if loaded:  # said, as it is a change from what loading alone would do
        init = "zero-initialised" if recipe.classifier_init == "zeros" else "initialised N(0, 0.01)"
        print(
            f"the classifier of --model ({_place(saved_layers)}) is not reused: a new one "
            f"{_place(recipe.classifier_projection_layers)}, {init} (--reuse_classifier starts from it)"
        )
    classifier = model.classifier
    with torch.no_grad():
        if recipe.classifier_init == "zeros":
            classifier.weight.zero_()
        else:
            classifier.weight.normal_(std=0.01)
        classifier.bias.zero_()


def _place(layers: int) -> str:
    return "on h" if not layers else f"on projection-head layer {layers}"


def build_finetune_optimizer(model: torch.nn.Module, recipe: FinetuneRecipe, lr: float) -> torch.optim.Optimizer:
    """The recipe's optimiser over the trainable parameters: LARS with the classifier, biases and BatchNorm out of
    weight decay and layer adaptation (as the official code), or SGD with Nesterov momentum 0.9."""
    if recipe.optimizer == "lars":
        classifier = list(model.classifier.parameters())
        return build_lars(model, lr=lr, weight_decay=recipe.weight_decay, not_adapted=classifier)
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay)


def _loaders(
    args: FinetuneArguments, train_ds: Any, test_ds: Any, label_column: str, config: Any, batch_size: int
) -> tuple:
    """Training batches (random crop + flip; full batches only) and test batches (the model's evaluation
    preprocessing)."""
    columns = [args.image_column, label_column]
    normalise = (config.image_mean, config.image_std)
    rows = train_ds.select_columns(columns)
    crop_flip = CropFlipDataset(rows, config.image_size, args.min_crop_scale, *normalise, *columns, seed=args.seed)
    train_loader = DataLoader(
        crop_flip,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,  # a last batch of one image would make BatchNorm fail
        num_workers=args.num_workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    test_loader = DataLoader(
        test_ds.select_columns(columns),
        batch_size=args.per_device_batch_size,
        num_workers=args.num_workers,
        collate_fn=ImageProcessorCollate(build_image_processor(config), *columns),
    )
    return train_loader, test_loader


@torch.no_grad()
def _evaluate(
    model: torch.nn.Module, loader: DataLoader, accelerator: Accelerator, num_classes: int
) -> dict[str, float]:
    """Top-1 accuracy on the held-out batches, and top-5 where ``num_classes`` (those trained on) makes it mean
    something."""
    model.eval()
    correct1 = correct5 = total = 0
    for batch in tqdm(loader, desc="test", disable=not accelerator.is_local_main_process):
        logits = model(pixel_values=batch["pixel_values"]).logits
        logits, labels = accelerator.gather_for_metrics((logits, batch["labels"]))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == labels).sum().item()
        correct5 += (top == labels[:, None]).any(dim=1).sum().item()
        total += len(labels)
    metrics = {"finetune_top1": correct1 / max(total, 1)}
    if top5_defined(num_classes):
        metrics["finetune_top5"] = correct5 / max(total, 1)
    return metrics


def finetune(args: FinetuneArguments) -> dict[str, float]:
    """Fine-tune as described by ``args``; returns test top-1 / top-5 (fractions in [0, 1])."""
    check_local_or_hub(args.model, "--model")
    check_model_folder(args.model, "--model")
    accelerator = Accelerator()
    # before any work: the folder must be writable and not in use (held by the main process alone)
    with OutputDirLock(args.output_dir, hold=accelerator.is_main_process):
        return _finetune(args, accelerator)


def _finetune(args: FinetuneArguments, accelerator: Accelerator) -> dict[str, float]:
    set_seed(args.seed)
    (train_ds, label_column, class_names), (test_ds, _, _), split = load_train_and_held_out(args)
    labels = torch.tensor(train_ds[label_column])
    num_classes = len(labels.unique())  # the classes the classifier learns (a sample keeps one image of each)
    check_classes(num_classes, f"the training split {args.train_split!r}")
    kept, _ = class_balanced_split(labels, args.label_fraction, args.seed)
    train_ds = train_ds.select(kept.tolist())
    model, recipe = load_model_to_finetune(args, class_names)
    # One resolution for training, the test and the saved image processor: a network fine-tuned at one size (its
    # BatchNorm statistics included) fails at another. By default the encoder's training resolution, not the higher
    # one its frozen features are evaluated at: on the default run that fine-tunes better (docs/evaluation.md).
    model.config.image_size = args.image_size or model.config.image_size
    model.config.eval_image_size = None  # evaluated as trained
    batch_size = _batch_size(args, len(train_ds), accelerator)
    train_loader, test_loader = _loaders(args, train_ds, test_ds, label_column, model.config, batch_size)
    model = with_sync_batch_norm(model, accelerator.num_processes, accelerator.device)
    global_batch = batch_size * accelerator.num_processes
    lr = recipe.learning_rate(global_batch)
    accelerator.print(describe_recipe(recipe.details(global_batch)))
    optimizer = build_finetune_optimizer(model, recipe, lr)
    total_steps = args.epochs * (len(train_ds) // global_batch)
    # not prepared: Accelerate's wrapper would step it once per process per optimizer step
    scheduler = build_schedule(optimizer, 0, total_steps)
    model, optimizer, train_loader, test_loader = accelerator.prepare(model, optimizer, train_loader, test_loader)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(output_dir / FINETUNE_LOG)
    log.clear()
    replaced = train_supervised(args.epochs, accelerator, model, optimizer, scheduler, train_loader, total_steps, log)
    if replaced:
        accelerator.print(f"replaced {replaced} unreadable images with other images of the training split")
    metrics = _evaluate(model, test_loader, accelerator, num_classes)
    accelerator.print(", ".join(f"{key} {100 * value:.2f}%" for key, value in metrics.items()))
    if line := not_reported_line(left_out((), None, num_classes, top5="finetune_top5")):
        accelerator.print(line)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with writing(output_dir, "the fine-tuned model"):
            save_model(accelerator.unwrap_model(model).eval(), output_dir)
        details = {
            "base_model": public_model_name(args.model),  # no local paths in published records
            "train_split": args.train_split,
            "label_fraction": args.label_fraction,
            "num_train": len(train_ds),
            "freeze_encoder": args.freeze_encoder,
            "epochs": args.epochs,
            "image_size": accelerator.unwrap_model(model).config.image_size,
            **recipe.details(global_batch),
            "global_batch_size": global_batch,
            "seed": args.seed,  # with label_fraction, which labelled images (scripts/distill.py uses the same)
            "skipped_images": replaced,
        }
        _write_results(args, split, metrics, details, log)
        accelerator.print(f"model, results and card in {output_dir}")
    accelerator.end_training()
    return metrics


def _batch_size(args: FinetuneArguments, num_train: int, accelerator: Accelerator) -> int:
    """``--per_device_batch_size``, or less where the (sampled) training set holds fewer images than one global batch:
    incomplete batches are dropped, so there must be a full one."""
    per_device = min(args.per_device_batch_size, num_train // accelerator.num_processes)
    if per_device < 1:
        raise UsageError(
            f"{num_train} training images cannot fill one batch on each of {accelerator.num_processes} processes: "
            "raise --label_fraction or use fewer processes"
        )
    if per_device < args.per_device_batch_size:
        accelerator.print(f"{num_train} training images: batches of {per_device} per process")
    return per_device


def with_sync_batch_norm(model: torch.nn.Module, num_processes: int, device: torch.device) -> torch.nn.Module:
    """The model with BatchNorm synchronised across processes on several GPUs (global BN, as in pretraining and the
    official fine-tuning); unchanged on one process or on CPUs, where SyncBatchNorm does not run."""
    if num_processes > 1 and device.type != "cpu":
        return convert_sync_batchnorm(model)
    return model


def train_supervised(
    epochs: int,
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loader: DataLoader,
    total_steps: int,
    log: RunLog,
    desc: str = "fine-tuning",
) -> int:
    """``epochs`` of a transformers model trained on its own loss (``pixel_values`` and ``labels`` of each batch),
    logged every 10 steps; returns how many unreadable inputs were replaced (on all processes)."""
    step = 0
    replaced = torch.zeros((), dtype=torch.long, device=accelerator.device)
    progress = tqdm(total=total_steps, desc=desc, disable=not accelerator.is_local_main_process)
    for _ in range(epochs):
        model.train()  # SimCLRForImageClassification keeps a frozen encoder in eval mode
        for batch in loader:
            replaced += batch["num_failed"].sum()
            loss = model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            progress.update()
            if accelerator.is_main_process and (step % 10 == 0 or step == total_steps):
                log.write(step, step / len(loader), loss=loss.item(), lr=scheduler.get_last_lr()[0])
    progress.close()
    return int(accelerator.reduce(replaced, reduction="sum").item())


def _write_results(
    args: FinetuneArguments, split: str, metrics: dict[str, float], details: dict[str, Any], log: RunLog
) -> None:
    """``eval_results.json``, the card (an image-classification model now) and the training curves."""
    from .plots import missing_plot_packages, plot_training_curves

    output_dir = Path(args.output_dir)
    dataset_name, dataset_id = dataset_names(args.dataset)
    write_eval_results(
        output_dir, "finetune", dataset_name, metrics, split=split, dataset_id=dataset_id, details=details
    )
    update_model_card(output_dir, model_name=output_dir.resolve().name, pipeline_tag="image-classification")
    if missing_plot_packages(tsne=False):
        print("no finetune_curves.png: pip install 'hf-simclr[plots]' to draw it")
    else:
        plot_training_curves(log.path, output_dir / "finetune_curves.png", loss_title="Cross-entropy loss")


__all__ = [
    "CropFlipDataset",
    "FinetuneArguments",
    "build_finetune_optimizer",
    "finetune",
    "load_model_to_finetune",
    "parse_args",
    "train_supervised",
    "with_sync_batch_norm",
]
