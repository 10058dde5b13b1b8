"""Arguments of the evaluation scripts, `scripts/linear_eval.py`, `scripts/finetune.py` and
`scripts/finetune_segmentation.py`: the shared dataset flags, the model and each evaluation's settings. Checked when
read, before torch or any model or data is loaded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..cli import parse_arguments
from ..data.arguments import DatasetArguments
from ..errors import UsageError

# the choices of scripts/finetune.py (hf_simclr.evaluation.finetune_recipe holds the recipes; it needs torch)
RECIPES = ("simclr_v2", "simclr_v1")
OPTIMIZERS = ("lars", "momentum")
CLASSIFIER_INITS = ("zeros", "normal")

MIN_IMAGE_SIZE = 8  # the smallest a SimCLR config accepts
MAX_IMAGE_SIZE = 4096  # far above any recipe: a larger side is a typo that would fail on a huge allocation


@dataclass(kw_only=True)
class LinearEvalArguments(DatasetArguments):
    """Arguments of `scripts/linear_eval.py`: the dataset flags, the model and the evaluation's settings."""

    model: str = field(metadata={"help": "model folder or Hub model id"})
    batch_size: int = field(default=256, metadata={"help": "images per batch during feature extraction"})
    num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes for decoding images"})
    epochs: int = field(default=100, metadata={"help": "epochs of the linear classifier"})
    val_fraction: float = field(default=0.1, metadata={"help": "train share held out to choose lr and weight decay"})
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "where results, plots and the card go; default: the model folder if local, else "
            "./linear_eval/<model id>"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of the validation split, the classifier and the plots"})
    no_plots: bool = field(default=False, metadata={"help": "skip the t-SNE and training-curve plots"})
    max_plot_points: int = field(default=2000, metadata={"help": "test images in the t-SNE plot"})
    random_init: bool = field(
        default=False,
        metadata={
            "help": "evaluate the model's architecture at random initialisation instead of its weights: the "
            "baseline pretraining must beat"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("batch_size", "epochs", "max_plot_points"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise UsageError(f"--num_workers must be 0 or more, got {self.num_workers}")
        if not 0 < self.val_fraction < 1:
            raise UsageError(f"--val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction}")
        if self.output_dir is None:
            self.output_dir = default_output_dir(self.model, self.random_init)
        if Path(self.output_dir).is_file():
            raise UsageError(f"--output_dir {self.output_dir} is a file; choose a folder")


def default_output_dir(model: str, random_init: bool) -> str:
    """The model folder itself for a local model; else ``linear_eval/<name>`` (also for the random-init baseline,
    which must not overwrite the model's card)."""
    if Path(model).is_dir() and not random_init:
        return model
    suffix = "-random-init" if random_init else ""
    name = Path(model.rstrip("/")).name if Path(model).is_dir() else model.replace("/", "--")
    return str(Path("linear_eval") / f"{name}{suffix}")


def parse_linear_eval_args(argv: Sequence[str] | None = None) -> LinearEvalArguments:
    """`scripts/linear_eval.py`'s arguments from `argv` (default: the command line) or the JSON/YAML file it names."""
    description = (
        "kNN (k=20, 200) and linear evaluation of a frozen image encoder (SimCLR or any AutoModel backbone with a "
        "pooled output)."
    )
    return parse_arguments(LinearEvalArguments, argv, description)


@dataclass(kw_only=True)
class FinetuneArguments(DatasetArguments):
    """Arguments of `scripts/finetune.py`: the dataset flags, the model, the label fraction and the optimisation."""

    model: str = field(metadata={"help": "SimCLR model folder or Hub id (SimCLRModel or SimCLRForImageClassification)"})
    output_dir: str = field(metadata={"help": "folder for the fine-tuned model, results and card"})
    label_fraction: float = field(
        default=1.0, metadata={"help": "share of the training labels used, per class (the paper: 0.01, 0.1, 1.0)"}
    )
    freeze_encoder: bool = field(default=False, metadata={"help": "train only the classifier (linear evaluation)"})
    epochs: int | None = field(
        default=None,
        metadata={
            "help": "passes over the (sampled) training data; default as the papers: 60 with --label_fraction 0.01 "
            "or less, else 30, and 90 with --freeze_encoder"
        },
    )
    recipe: str | None = field(
        default=None,
        metadata={
            "help": "simclr_v2 (LARS 0.005 x sqrt(B), classifier on the first head layer below 100 %% of the "
            "labels) or simclr_v1 (Nesterov momentum 0.05 x B / 256); default: simclr_v2 for a model with the v2 "
            "head (3 layers with BatchNorm), else simclr_v1. Each setting below overrides it"
        },
    )
    optimizer: str | None = field(default=None, metadata={"help": "lars or momentum (Nesterov); default: the recipe's"})
    classifier_projection_layers: int | None = field(
        default=None,
        metadata={
            "help": "projection-head layers kept below the classifier, with their pretrained weights: 0 puts the "
            "classifier on h, 1 on the first head layer; default: the recipe's (simclr_v2: 1 below 100 %% of the "
            "labels, else 0; simclr_v1: the model's own; --freeze_encoder: 0)"
        },
    )
    classifier_init: str | None = field(
        default=None,
        metadata={"help": "zeros or normal (N(0, 0.01)); default: zeros for simclr_v2 and linear evaluation"},
    )
    reuse_classifier: bool = field(
        default=False,
        metadata={
            "help": "start from the classifier the --model folder holds (it must sit where this run places it and "
            "know the same classes) instead of a new one"
        },
    )
    learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "the learning rate itself; default: the recipe's, scaled with the global batch B (simclr_v2: "
            "0.005 x sqrt(B); simclr_v1: 0.05 x B / 256; --freeze_encoder: 0.1 x B / 256)"
        },
    )
    weight_decay: float | None = field(
        default=None, metadata={"help": "default: the recipe's (0 when fine-tuning, 1e-6 with --freeze_encoder)"}
    )
    per_device_batch_size: int = field(default=64, metadata={"help": "images per process per step"})
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "resolution the classifier is trained at, tested at and saved for (the image processor of the "
            "output folder); default: the resolution the model was trained at (its config's image_size)"
        },
    )
    min_crop_scale: float = field(default=0.08, metadata={"help": "smallest crop area of the random resized crop"})
    num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes per process"})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "replace a model already in --output_dir"})
    seed: int = field(default=0, metadata={"help": "seed of the label sample, the classifier and the augmentation"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.label_fraction <= 1:
            raise UsageError(f"--label_fraction must be in (0, 1], e.g. 0.01, 0.1 or 1.0; got {self.label_fraction}")
        if self.epochs is None:
            self.epochs = default_finetune_epochs(self.label_fraction, self.freeze_encoder)
        for name in ("epochs", "per_device_batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.image_size is not None and not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise UsageError(
                f"--image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels, got {self.image_size}"
            )
        if self.classifier_projection_layers is not None and self.classifier_projection_layers < 0:
            raise UsageError(
                f"--classifier_projection_layers must be 0 or more, got {self.classifier_projection_layers}"
            )
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise UsageError(f"--learning_rate must be > 0, got {self.learning_rate}")
        if (self.weight_decay is not None and self.weight_decay < 0) or self.num_workers < 0:
            raise UsageError("--weight_decay and --num_workers must be 0 or more")
        for name, allowed in (("recipe", RECIPES), ("optimizer", OPTIMIZERS), ("classifier_init", CLASSIFIER_INITS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise UsageError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")
        if not 0 < self.min_crop_scale <= 1:
            raise UsageError(f"--min_crop_scale must be in (0, 1], got {self.min_crop_scale}")
        output_dir = Path(self.output_dir)
        if output_dir.is_file():
            raise UsageError(f"--output_dir {output_dir} is a file; choose a folder")
        if Path(self.model).is_dir() and output_dir.resolve() == Path(self.model).resolve():
            raise UsageError("--output_dir is the --model folder; choose a new folder for the fine-tuned model")
        if (output_dir / "config.json").is_file() and not self.overwrite_output_dir:
            raise UsageError(f"--output_dir {output_dir} holds a model; pass --overwrite_output_dir or another folder")


def default_finetune_epochs(label_fraction: float, freeze_encoder: bool) -> int:
    """The papers' epochs: 90 for linear evaluation; fine-tuning 60 on 1% of the labels and 30 on 10% (SimCLR v1 and
    v2), and 30 on all of them (SimCLRv2)."""
    if freeze_encoder:
        return 90
    return 60 if label_fraction <= 0.01 else 30


def parse_finetune_args(argv: Sequence[str] | None = None) -> FinetuneArguments:
    """`scripts/finetune.py`'s arguments from `argv` (default: the command line) or the JSON/YAML file it names."""
    description = (
        "Fine-tune a SimCLR checkpoint for image classification with Accelerate (run with "
        "`accelerate launch scripts/finetune.py ...` for several GPUs or mixed precision)."
    )
    return parse_arguments(FinetuneArguments, argv, description)


@dataclass(kw_only=True)
class SegmentationArguments(DatasetArguments):
    """Arguments of `scripts/finetune_segmentation.py`: the dataset and mask flags, the model, UperNet and the
    optimisation."""

    model: str = field(metadata={"help": "SimCLR model folder or Hub id whose encoder becomes UperNet's backbone"})
    output_dir: str = field(metadata={"help": "folder for the segmentation model, results, card and pictures"})
    mask_column: str | None = field(
        default=None,
        metadata={
            "help": "column holding the masks of a Hub or parquet dataset (default: 'annotation', 'label', 'mask', "
            "... whichever is an image column); a folder of image/mask pairs needs none"
        },
    )
    id2label: str | None = field(
        default=None,
        metadata={
            "help": "JSON file of class ids to names (default: id2label.json of the dataset, else the ids found in "
            "the training masks)"
        },
    )
    reduce_labels: bool = field(
        default=False,
        metadata={"help": "mask id 0 means unlabelled (ADE20K): ignore it and shift the other ids down by one"},
    )
    random_init: bool = field(
        default=False,
        metadata={"help": "start from the model's architecture at random initialisation: the baseline to beat"},
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "side of the training crops and of the evaluated images (default: the model's evaluation size)"
        },
    )
    out_features: list[str] | None = field(
        default=None,
        metadata={"help": "backbone stages UperNet reads, e.g. stage1 stage2 stage3 stage4 (default: the last four)"},
    )
    decoder_hidden_size: int = field(default=512, metadata={"help": "channels of UperNet's decoder (its hidden_size)"})
    epochs: int = field(default=20, metadata={"help": "passes over the training split"})
    learning_rate: float = field(default=5e-4, metadata={"help": "AdamW peak learning rate (cosine decay to 0)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of the steps that warm the learning rate up"})
    per_device_batch_size: int = field(default=16, metadata={"help": "images per process per step"})
    min_crop_scale: float = field(default=0.5, metadata={"help": "smallest area of the random resized training crop"})
    num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes per process"})
    num_examples: int = field(default=6, metadata={"help": "held-out images drawn with their predicted masks"})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "replace a model already in --output_dir"})
    seed: int = field(default=0, metadata={"help": "seed of the decoder's initialisation and of the augmentation"})

    def __post_init__(self) -> None:
        for name in ("epochs", "per_device_batch_size", "decoder_hidden_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.image_size is not None and self.image_size < 16:
            raise UsageError(f"--image_size must be at least 16, got {self.image_size}")
        if self.learning_rate <= 0 or self.weight_decay < 0 or not 0 <= self.warmup_ratio < 1:
            raise UsageError("--learning_rate must be > 0, --weight_decay >= 0 and --warmup_ratio in [0, 1)")
        if not 0 < self.min_crop_scale <= 1:
            raise UsageError(f"--min_crop_scale must be in (0, 1], got {self.min_crop_scale}")
        if self.num_workers < 0 or self.num_examples < 0:
            raise UsageError("--num_workers and --num_examples must be 0 or more")
        output_dir = Path(self.output_dir)
        if output_dir.is_file():
            raise UsageError(f"--output_dir {output_dir} is a file; choose a folder")
        if Path(self.model).is_dir() and output_dir.resolve() == Path(self.model).resolve():
            raise UsageError("--output_dir is the --model folder; choose a new folder for the segmentation model")
        if (output_dir / "config.json").is_file() and not self.overwrite_output_dir:
            raise UsageError(f"--output_dir {output_dir} holds a model; pass --overwrite_output_dir or another folder")


def parse_segmentation_args(argv: Sequence[str] | None = None) -> SegmentationArguments:
    """`scripts/finetune_segmentation.py`'s arguments from `argv` (default: the command line) or the JSON/YAML file
    it names."""
    description = (
        "Fine-tune transformers' UperNet with a SimCLR encoder as its backbone for semantic segmentation, with "
        "Accelerate (`accelerate launch scripts/finetune_segmentation.py ...` for several GPUs or mixed precision)."
    )
    return parse_arguments(SegmentationArguments, argv, description)


__all__ = [
    "FinetuneArguments",
    "LinearEvalArguments",
    "SegmentationArguments",
    "default_finetune_epochs",
    "default_output_dir",
    "parse_finetune_args",
    "parse_linear_eval_args",
    "parse_segmentation_args",
]
