"""Arguments of `scripts/distill.py`, checked when read, before torch or any model or data is loaded.

The defaults are SimCLRv2's distillation (Chen et al. 2020b, section 3; google-research/simclr@383d414
``colabs/distillation_self_training.ipynb``): the teacher's softened class distribution at temperature 0.1 for a
student of the teacher's architecture (self-distillation) and 1.0 for another one, unlabelled images only, LARS with
the pretraining's learning rate 0.1 x sqrt(B), weight decay 1e-4, 5 % warm-up then cosine, 400 epochs, random crop
and flip as the only augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..cli import parse_arguments
from ..data.arguments import DatasetArguments
from ..errors import UsageError

SELF_DISTILLATION_TEMPERATURE = 0.1  # the paper: "0.1 for self-distillation ..."
BIG_TO_SMALL_TEMPERATURE = 1.0  # "... and 1.0 for large-to-small distillation"
WARMUP_SHARE = 0.05  # SimCLRv2 warms up for 5 % of the epochs (40 of 800)
LR_SCALINGS = ("linear", "sqrt", "none")  # as hf_simclr.optim (which needs torch)
MAX_IMAGE_SIZE = 4096


@dataclass(kw_only=True)
class DistillArguments(DatasetArguments):
    """Arguments of `scripts/distill.py`: the dataset flags, the teacher and the student, the loss and the
    optimisation, checkpoints and the Hub."""

    teacher: str = field(
        metadata={
            "help": "the fine-tuned classifier to learn from: a folder or Hub id (scripts/finetune.py's output, or any "
            "AutoModelForImageClassification with an image processor)"
        }
    )
    student: str = field(
        metadata={
            "help": "a timm backbone name: a new network at random initialisation (the teacher's own backbone gives "
            "the teacher's encoder architecture: self-distillation); or a SimCLR model folder or Hub id, whose "
            "encoder is the start"
        }
    )
    output_dir: str = field(metadata={"help": "folder for the student, its results, card and checkpoints"})
    temperature: float | None = field(
        default=None,
        metadata={
            "help": "temperature of the softened distributions; default: 0.1 when the student has the teacher's "
            "architecture (self-distillation), else 1.0"
        },
    )
    distillation_weight: float = field(
        default=1.0,
        metadata={
            "help": "the paper's alpha: loss = alpha x distillation + (1 - alpha) x cross-entropy on the labelled "
            "images; 1 uses no label (the paper's default), 0 trains on the labels alone (the baseline)"
        },
    )
    label_fraction: float | None = field(
        default=None,
        metadata={
            "help": "share of the training labels known, per class, for the label loss (drawn as scripts/finetune.py "
            "draws them); default: the teacher's fine-tuning's, as its eval_results.json records"
        },
    )
    label_seed: int | None = field(
        default=None, metadata={"help": "seed of that draw; default: the teacher's fine-tuning's, else 0"}
    )
    image_size: int | None = field(
        default=None, metadata={"help": "the student's resolution (training, test, saved); default: the teacher's"}
    )
    epochs: int = field(default=400, metadata={"help": "passes over the training images (the paper: 400)"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many steps (overrides epochs)"})
    per_device_batch_size: int = field(default=256, metadata={"help": "images per process per step"})
    learning_rate: float = field(default=0.1, metadata={"help": "base learning rate, scaled by --lr_scaling"})
    lr_scaling: str = field(
        default="sqrt", metadata={"help": "sqrt: lr x sqrt(B) (SimCLRv2), linear: lr x B / 256, none; B: global batch"}
    )
    warmup_epochs: float | None = field(default=None, metadata={"help": "linear warm-up; default: 5 %% of --epochs"})
    weight_decay: float = field(default=1e-4, metadata={"help": "LARS weight decay (not on biases and BatchNorm)"})
    min_crop_scale: float = field(default=0.08, metadata={"help": "smallest area fraction of the student's crops"})
    seed: int = field(default=0, metadata={"help": "seed of the student's initialisation, data order and crops"})
    num_workers: int | None = field(
        default=None, metadata={"help": "DataLoader workers per process (default: the cores of each process)"}
    )
    log_every: int = field(default=10, metadata={"help": "log the loss every N steps"})
    checkpointing_steps: int | None = field(
        default=None, metadata={"help": "save a checkpoint every N steps (always at the end)"}
    )
    checkpoints_total_limit: int = field(default=2, metadata={"help": "keep this many checkpoints"})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "checkpoint folder or 'latest' ('latest' with no checkpoint yet starts afresh)"},
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "replace a run already in --output_dir"})
    ddp_timeout: int = field(default=600, metadata={"help": "seconds a process waits for the others before failing"})
    push_to_hub: bool = field(default=False, metadata={"help": "upload the student to the Hub when done"})
    hub_model_id: str | None = field(default=None, metadata={"help": "org/name of the Hub repository"})
    hub_private: bool = field(default=False, metadata={"help": "create the Hub repository as private"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("epochs", "per_device_batch_size", "log_every", "checkpoints_total_limit", "ddp_timeout"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_steps", "checkpointing_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.temperature is not None and not 0 < self.temperature <= 100:
            raise UsageError(f"--temperature must be in (0, 100], got {self.temperature}")
        if not 0 <= self.distillation_weight <= 1:
            raise UsageError(f"--distillation_weight must be in [0, 1], got {self.distillation_weight}")
        if self.label_fraction is not None and not 0 < self.label_fraction <= 1:
            raise UsageError(f"--label_fraction must be in (0, 1], e.g. 0.01, 0.1 or 1.0; got {self.label_fraction}")
        if self.image_size is not None and not 8 <= self.image_size <= MAX_IMAGE_SIZE:
            raise UsageError(f"--image_size must be between 8 and {MAX_IMAGE_SIZE} pixels, got {self.image_size}")
        if self.learning_rate <= 0:
            raise UsageError(f"--learning_rate must be > 0, got {self.learning_rate}")
        if self.lr_scaling not in LR_SCALINGS:
            raise UsageError(f"--lr_scaling must be one of {', '.join(LR_SCALINGS)}, got {self.lr_scaling!r}")
        if self.warmup_epochs is None:
            self.warmup_epochs = round(WARMUP_SHARE * self.epochs, 6)
        if self.warmup_epochs < 0 or self.weight_decay < 0 or (self.num_workers or 0) < 0:
            raise UsageError("--warmup_epochs, --weight_decay and --num_workers must be 0 or more")
        if not 0 < self.min_crop_scale <= 1:
            raise UsageError(f"--min_crop_scale must be in (0, 1], got {self.min_crop_scale}")
        from ..hub.locate import check_hub_destination, check_local_or_hub  # a mistake fails now, not after training

        check_hub_destination(self.push_to_hub, self.hub_model_id)

        check_local_or_hub(self.teacher, "--teacher")
        check_local_or_hub(self.student, "--student")
        output_dir = Path(self.output_dir)
        if output_dir.is_file():
            raise UsageError(f"--output_dir {output_dir} is a file; choose a folder")
        for flag, model in (("--teacher", self.teacher), ("--student", self.student)):
            if Path(model).is_dir() and output_dir.resolve() == Path(model).resolve():
                raise UsageError(f"--output_dir is the {flag} folder; choose a new folder for the student")


def parse_distill_args(argv: Sequence[str] | None = None) -> DistillArguments:
    """`scripts/distill.py`'s arguments from `argv` (default: the command line) or the JSON/YAML file it names."""
    description = (
        "Distil a fine-tuned classifier into a student on unlabelled images, SimCLRv2's third step (run with "
        "`accelerate launch scripts/distill.py ...` for several GPUs or mixed precision)."
    )
    return parse_arguments(DistillArguments, argv, description)


__all__ = [
    "BIG_TO_SMALL_TEMPERATURE",
    "SELF_DISTILLATION_TEMPERATURE",
    "DistillArguments",
    "parse_distill_args",
]
