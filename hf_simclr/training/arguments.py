"""Command-line arguments of `scripts/pretrain.py` and the paper's recipes as presets."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cli import ArgumentParser
from ..data import DatasetArguments
from ..errors import UsageError
from ..hub import records
from ..hub.locate import check_hub_destination

SQRT_BASE_LR = 0.075  # lr = 0.075 x sqrt(B), the paper's rule for square-root scaling
MAX_IMAGE_SIZE = 4096  # far above any SimCLR recipe; a larger side is a typo that would fail on a huge allocation
# The NCCL default: long enough for the kNN monitor and checkpoints of ImageNet runs, which the others wait for.
DEFAULT_DDP_TIMEOUT = 600

# Values a preset fills in for every argument the user did not give.
PRESETS: dict[str, dict] = {
    # The embedded Fashion-MNIST subset on a laptop CPU: about five minutes on two cores (README: how it was chosen).
    "demo": dict(
        backbone="resnet18",
        image_size=32,
        # crops of 20-100 % enlarge objects by 1.38 on average (E[1/sqrt(area)]): tested at 32 x 1.38 = 44 px
        eval_image_size=44,
        per_device_batch_size=256,
        epochs=10,
        learning_rate=0.3,
        lr_scaling="linear",
        warmup_epochs=2,
        temperature=0.2,
        augment="demo",
        cifar_stem=False,
    ),
    # The paper's CIFAR-10 recipe (appendix B.9): colour strength 0.5, no blur, temperature 0.5.
    "cifar": dict(
        backbone="resnet50",
        image_size=32,
        eval_image_size=None,
        per_device_batch_size=512,
        epochs=1000,
        learning_rate=1.0,
        lr_scaling="linear",
        warmup_epochs=10,
        temperature=0.5,
        augment="cifar",
        cifar_stem=True,
    ),
    # The paper's ImageNet recipe: LARS 0.3 x B/256, 10 warm-up epochs, temperature 0.1, blur on.
    "imagenet": dict(
        backbone="resnet50",
        image_size=224,
        eval_image_size=None,
        per_device_batch_size=256,
        epochs=100,
        learning_rate=0.3,
        lr_scaling="linear",
        warmup_epochs=10,
        temperature=0.1,
        augment="imagenet",
        cifar_stem=False,
    ),
}


def _preset_help(name: str, text: str) -> str:
    """``text`` and the value each preset gives ``name`` when the flag is not set."""
    values = ", ".join(f"{preset}={recipe[name]}" for preset, recipe in PRESETS.items())
    return f"{text} (default from --preset: {values})"


def _from_preset(name: str, text: str) -> Any:
    """A field that the preset fills when the flag is not set; ``--help`` shows each preset's value."""
    return field(default=None, metadata={"help": _preset_help(name, text)})


@dataclass
class PretrainArguments(DatasetArguments):
    """Everything a pretraining run needs; `None` fields are filled from the preset."""

    streaming: bool = field(default=False, metadata={"help": "stream the dataset instead of downloading it"})
    preset: str = field(
        default="demo", metadata={"help": "recipe for every argument below that is not set: " + ", ".join(PRESETS)}
    )
    backbone: str | None = _from_preset("backbone", "timm model name of the encoder")
    backbone_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": 'architecture arguments for timm.create_model as JSON, e.g. \'{"norm_layer": "groupnorm"}\' or '
            "'{\"drop_path_rate\": 0.1}'; stored in the model's config (only the keys of "
            "hf_simclr.configuration_simclr.BACKBONE_KWARGS_ALLOWED, so loading never reads a file)"
        },
    )
    image_size: int | None = _from_preset("image_size", "training resolution in pixels")
    eval_image_size: int | None = field(
        default=None,
        metadata={
            "help": "resolution of evaluation (the kNN monitor and the saved image processor); default: --image_size, "
            "or the preset's when --image_size is the preset's or not given (demo 44)"
        },
    )
    augment: str | None = _from_preset("augment", "augmentation recipe: imagenet, cifar or demo")
    cifar_stem: bool | None = _from_preset(
        "cifar_stem", "ResNet stem for small images: a 3x3 stride-1 convolution and no max-pool"
    )
    min_crop_scale: float | None = field(
        default=None, metadata={"help": "smallest area fraction of a random crop (default: the augmentation recipe's)"}
    )
    jitter_strength: float | None = field(
        default=None, metadata={"help": "colour distortion strength s (default: the augmentation recipe's)"}
    )
    projection_dim: int = field(default=128, metadata={"help": "size of the projection z"})
    projection_hidden_dim: int | None = field(
        default=None, metadata={"help": "hidden width of the projection head (default: the encoder's width)"}
    )
    projection_layers: int = field(default=2, metadata={"help": "2 = SimCLR, 3 = SimCLRv2"})
    projection_batch_norm: bool = field(
        default=False, metadata={"help": "BatchNorm in the projection head, as the official code (v1 and v2)"}
    )
    temperature: float | None = _from_preset("temperature", "NT-Xent temperature")
    per_device_batch_size: int | None = _from_preset("per_device_batch_size", "images per process per step")
    epochs: int | None = _from_preset("epochs", "passes over the training data")
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many steps (overrides epochs)"})
    learning_rate: float | None = _from_preset(
        "learning_rate", "base learning rate before scaling; 0.075 with --lr_scaling sqrt"
    )
    lr_scaling: str | None = _from_preset(
        "lr_scaling", "linear: lr x B/256, sqrt: lr x sqrt(B), none; B is the global batch size"
    )
    warmup_epochs: float | None = _from_preset("warmup_epochs", "linear warm-up length in epochs")
    weight_decay: float = field(default=1e-6, metadata={"help": "LARS weight decay (not on biases and BN)"})
    output_dir: str = field(default="outputs/simclr", metadata={"help": "where the model, logs and checkpoints go"})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "start afresh in an output_dir that holds another run"}
    )
    seed: int = field(default=42, metadata={"help": "seed of initialisation, data order and augmentations"})
    checkpointing_steps: int | None = field(
        default=None, metadata={"help": "save a checkpoint every N steps (always at the end)"}
    )
    checkpoints_total_limit: int = field(default=2, metadata={"help": "keep this many checkpoints"})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "checkpoint folder or 'latest' ('latest' with no checkpoint yet starts afresh); the settings that "
            "define the run (data, seed, global batch, augmentation, image size, evaluation, model) must be the "
            "checkpoint's"
        },
    )
    allow_run_changes: bool = field(
        default=False,
        metadata={
            "help": "resume even though settings that define the run changed (all but the model's architecture, which "
            "never can): the run goes on with them, and results.json and the model card record both"
        },
    )
    ddp_timeout: int = field(
        default=DEFAULT_DDP_TIMEOUT,
        metadata={
            "help": "seconds a process waits for the others at any synchronisation before the run fails: the "
            "longest a dead or hung peer can hold the rest (also bounds the kNN monitor and checkpoint writing, "
            "which the other processes wait for)"
        },
    )
    report_to: str = field(default="none", metadata={"help": "tensorboard, wandb or none"})
    log_every: int = field(default=10, metadata={"help": "log scalars every N steps"})
    eval_every: int = field(default=5, metadata={"help": "kNN monitor every N epochs (0: only at the end)"})
    num_workers: int | None = field(
        default=None, metadata={"help": "DataLoader workers per process (default: the cores available to each process)"}
    )
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    grad_cache_chunk: int | None = field(
        default=None, metadata={"help": "gradient caching: back-propagate in chunks of K images to fit large batches"}
    )
    timm_export: bool = field(default=False, metadata={"help": "also write a timm-native encoder export"})
    push_to_hub: bool = field(default=False, metadata={"help": "upload the model to the Hub when done"})
    hub_model_id: str | None = field(default=None, metadata={"help": "org/name of the Hub repository"})
    hub_private: bool = field(default=False, metadata={"help": "create the Hub repository as private"})

    def resolved(self) -> PretrainArguments:
        """A copy with the preset's values in every unset field, validated."""
        if self.preset not in PRESETS:
            raise UsageError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        values = dataclasses.asdict(self)
        preset = PRESETS[self.preset]
        if values["eval_image_size"] is None and values["image_size"] in (None, preset["image_size"]):
            # it belongs to the preset's size, whether that size is given or not
            values["eval_image_size"] = preset["eval_image_size"]
        if values["learning_rate"] is None and values["lr_scaling"] == "sqrt":
            values["learning_rate"] = SQRT_BASE_LR  # the paper's base for square-root scaling
        for key, value in preset.items():
            if values[key] is None and key != "eval_image_size":
                values[key] = value
        values["backbone_kwargs"] = parse_backbone_kwargs(values["backbone_kwargs"])
        args = PretrainArguments(**values)
        args.validate()
        return args

    def validate(self) -> None:
        import timm  # here, not at the top: reading the flags (and --help) must not wait for timm and torch

        from ..optim import LR_SCALINGS

        positive = (
            "image_size",
            "eval_image_size",
            "per_device_batch_size",
            "epochs",
            "max_steps",
            "log_every",
            "checkpointing_steps",
            "checkpoints_total_limit",
            "grad_cache_chunk",
            "ddp_timeout",
        )
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name} must be >= 1, got {value}")
        for name in ("image_size", "eval_image_size"):
            if (value := getattr(self, name)) is not None and value > MAX_IMAGE_SIZE:
                raise UsageError(f"--{name} must be <= {MAX_IMAGE_SIZE} pixels, got {value}")
        if self.backbone is not None and not timm.is_model(self.backbone):
            raise UsageError(f"--backbone {self.backbone!r} is not a timm model name; see timm.list_models()")
        if self.backbone is not None and self.backbone_kwargs:
            check_backbone_builds(self.backbone, self.backbone_kwargs)
        if self.temperature is not None and not 0 < self.temperature <= 10:
            raise UsageError(f"--temperature must be in (0, 10], got {self.temperature}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise UsageError(f"--learning_rate must be > 0, got {self.learning_rate}")
        if self.lr_scaling not in (None, *LR_SCALINGS):
            raise UsageError(f"--lr_scaling must be one of {', '.join(LR_SCALINGS)}, got {self.lr_scaling!r}")
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise UsageError(f"--warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.report_to not in ("none", "tensorboard", "wandb", "all"):
            raise UsageError(f"--report_to must be tensorboard, wandb, all or none, got {self.report_to!r}")
        check_hub_destination(self.push_to_hub, self.hub_model_id)
        if self.timm_export and self.cifar_stem:
            raise UsageError(
                "--timm_export cannot export a --cifar_stem encoder (timm rebuilds ResNets with the 7x7 stride-2 "
                "stem): drop --timm_export, or pass --cifar_stem false"
            )
        if self.grad_cache_chunk and self.per_device_batch_size and self.per_device_batch_size % self.grad_cache_chunk:
            raise UsageError(
                f"--per_device_batch_size ({self.per_device_batch_size}) must be a multiple of --grad_cache_chunk "
                f"({self.grad_cache_chunk})"
            )

    def check_output_dir(self, num_processes: int) -> None:
        """Refuse to mix two runs in one folder, and a contrastive batch of fewer than two images.

        The refusal says what the folder holds and suggests resuming only when there is something to resume.
        """
        from .checkpoint import checkpoint_dirs

        if self.per_device_batch_size * num_processes < 2:
            raise UsageError("the global batch must hold at least 2 images: raise --per_device_batch_size")
        output_dir = Path(self.output_dir)
        if output_dir.is_file():
            raise UsageError(f"--output_dir {output_dir} is a file; choose a folder")
        if self.overwrite_output_dir:
            return
        finished = records.finished_run(output_dir)
        if finished is not None:
            if self.resume_from_checkpoint:
                return  # `latest`: pretrain() says the run is finished and changes nothing
            raise UsageError(
                f"--output_dir {output_dir} holds a finished run ({finished.get('steps', '?')} steps); pass "
                "--overwrite_output_dir to replace it, or another --output_dir"
            )
        if self.resume_from_checkpoint:
            return
        if (output_dir / records.TRAINING_ARGS).is_file():
            checkpoints = checkpoint_dirs(output_dir / records.CHECKPOINTS)
            if checkpoints:
                raise UsageError(
                    f"--output_dir {output_dir} holds an unfinished run (last checkpoint: {checkpoints[-1].name}); "
                    "pass --resume_from_checkpoint latest to continue it, --overwrite_output_dir to replace it, or "
                    "another --output_dir"
                )
            # nothing to resume, but `latest` starts afresh: the one command that serves every (re)start goes on
            raise UsageError(
                f"--output_dir {output_dir} holds another run, which stopped before its first checkpoint (nothing to "
                "resume); pass --resume_from_checkpoint latest or --overwrite_output_dir to start it afresh, or "
                "another --output_dir"
            )
        if (output_dir / "config.json").is_file():
            raise UsageError(
                f"--output_dir {output_dir} holds another run's saved model; pass --overwrite_output_dir to replace "
                "it, or another --output_dir"
            )


def parse_backbone_kwargs(value: dict | str | None) -> dict[str, Any]:
    """``--backbone_kwargs`` (a JSON object, or a dict from a config file) as a dict of allowed timm arguments."""
    from ..configuration_simclr import check_backbone_kwargs  # here: --help must not wait for transformers

    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise UsageError(
                f'--backbone_kwargs must be a JSON object such as \'{{"norm_layer": "groupnorm"}}\': {error}'
            ) from error
    try:
        check_backbone_kwargs(value)
    except ValueError as error:
        raise UsageError(f"--backbone_kwargs: {error}") from error
    return dict(value)


def check_backbone_builds(backbone: str, backbone_kwargs: dict[str, Any]) -> None:
    """Build the encoder on the meta device (no memory, no weights): wrong arguments fail now, not after loading
    the data."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            timm.create_model(backbone, pretrained=False, num_classes=0, **backbone_kwargs)
    except (TypeError, ValueError, KeyError, AssertionError) as error:  # timm checks some arguments by assert
        message = " ".join(str(error).split()) or "timm refused them"
        raise UsageError(
            f"--backbone {backbone} does not build with --backbone_kwargs {json.dumps(backbone_kwargs)}: {message}"
        ) from error


def build_parser() -> ArgumentParser:
    return ArgumentParser(
        PretrainArguments,
        description="SimCLR pretraining. Run with `accelerate launch scripts/pretrain.py [options | run.json]`;\n"
        "mixed precision, processes and machines come from `accelerate launch` / `accelerate config`.",
    )


def parse_args(argv: Sequence[str] | None = None) -> PretrainArguments:
    """`scripts/pretrain.py`'s arguments from `argv` (default: the command line) or from the JSON/YAML file it names."""
    (args,) = build_parser().parse(argv)
    return args


__all__ = [
    "DEFAULT_DDP_TIMEOUT",
    "MAX_IMAGE_SIZE",
    "PRESETS",
    "SQRT_BASE_LR",
    "PretrainArguments",
    "build_parser",
    "parse_args",
    "parse_backbone_kwargs",
]
