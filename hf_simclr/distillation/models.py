"""The teacher (a fine-tuned classifier, frozen, with its own evaluation preprocessing) and the student (a
``SimCLRForImageClassification`` for the teacher's classes, with its classifier on h) of a distillation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification
from transformers.utils import cached_file

from ..configuration_simclr import SimCLRConfig, check_image_processor_config
from ..errors import UsageError
from ..hub import records
from ..hub.locate import check_local_or_hub, check_model_folder, reaching_the_hub
from ..modeling_simclr import SimCLRForImageClassification, build_image_processor
from .arguments import BIG_TO_SMALL_TEMPERATURE, SELF_DISTILLATION_TEMPERATURE

# What makes two SimCLR encoders the same network (self-distillation, in the paper's sense: the same architecture,
# the projection head aside)
ENCODER_FIELDS = ("backbone", "backbone_kwargs", "width_multiplier", "sk_ratio", "cifar_stem", "tf_same_stem_pool")
DEFAULT_RESOLUTION = 224


@dataclass
class Teacher:
    """A fine-tuned classifier, frozen in eval mode, and what comes with it."""

    model: nn.Module
    processor: Any  # its evaluation preprocessing: the image processor saved with it
    class_names: list[str]
    source: str
    finetuning: dict[str, Any] = field(default_factory=dict)  # what its scripts/finetune.py run recorded, if any

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def resolution(self) -> int:
        """The side of the teacher's inputs: its config's training resolution (SimCLR), else its processor's crop."""
        if getattr(self.config, "model_type", None) == "simclr":
            return self.config.image_size
        for size in (getattr(self.processor, "crop_size", None), getattr(self.processor, "size", None)):
            if isinstance(size, dict):
                side = size.get("height") or size.get("shortest_edge")
                if isinstance(side, int):
                    return side
        return DEFAULT_RESOLUTION


def load_teacher(source: str) -> Teacher:
    """The classifier ``--teacher`` names, frozen; a :class:`UsageError` of one line for anything that is not a
    trained image classifier."""
    check_local_or_hub(source, "--teacher")
    check_model_folder(source, "--teacher")
    try:
        with reaching_the_hub(f"model {source}"):
            config = AutoConfig.from_pretrained(source)
            model, loading = AutoModelForImageClassification.from_pretrained(source, output_loading_info=True)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"--teacher {source}: not an image classifier that loads ({reason})") from error
    missing = sorted(loading["missing_keys"])
    if missing:
        what = "classifier" if any(key.startswith("classifier.") for key in missing) else "network"
        raise UsageError(
            f"--teacher {source} has no trained {what} (no weights for {missing[0]}, ...): fine-tune it first, e.g. "
            "with scripts/finetune.py, and pass that folder"
        )
    try:
        with reaching_the_hub(f"model {source}"):
            processor = AutoImageProcessor.from_pretrained(source)
    except (OSError, ValueError) as error:
        if config.model_type != "simclr":
            raise UsageError(f"--teacher {source} has no image processor (preprocessor_config.json)") from error
        processor = build_image_processor(model.config)
    try:
        check_image_processor_config(processor.to_dict(), f"--teacher {source}: its image processor")
    except ValueError as error:
        raise UsageError(str(error)) from error
    model.eval().requires_grad_(False)
    names = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    return Teacher(model, processor, names, source, recorded_finetuning(source))


def recorded_finetuning(source: str) -> dict[str, Any]:
    """The details of the teacher's ``scripts/finetune.py`` run (label fraction, seed, ...) from its
    ``eval_results.json``, or nothing."""
    try:
        path = cached_file(
            source,
            records.EVAL_RESULTS,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except OSError:
        return {}
    if path is None:
        return {}
    entries = records.read_eval_results(Path(path).parent)
    found = [entry for entry in entries if entry.get("evaluation") == "finetune"]
    return dict(found[-1].get("details") or {}) if found else {}


def same_architecture(teacher_config: Any, student_config: Any) -> bool:
    """Whether the student's encoder is the teacher's network (self-distillation)."""
    if getattr(teacher_config, "model_type", None) != "simclr":
        return False
    return all(getattr(teacher_config, name, None) == getattr(student_config, name, None) for name in ENCODER_FIELDS)


def default_temperature(teacher_config: Any, student_config: Any) -> float:
    """The paper's: 0.1 for self-distillation, 1.0 for a student of another architecture."""
    if same_architecture(teacher_config, student_config):
        return SELF_DISTILLATION_TEMPERATURE
    return BIG_TO_SMALL_TEMPERATURE


def build_student(spec: str, teacher: Teacher, image_size: int | None, seed: int) -> SimCLRForImageClassification:
    """The student ``--student`` names, for the teacher's classes, its classifier on h and new.

    A timm backbone name builds that network at random initialisation (the teacher's own backbone name builds the
    teacher's encoder architecture: its width, stem and selective kernels); a SimCLR folder or Hub id starts from
    its encoder's weights. The student is normalised as the teacher and trained at ``image_size`` (default: the
    teacher's resolution).
    """
    labels = dict(enumerate(teacher.class_names))
    classes = dict(num_labels=len(labels), id2label=labels, label2id={name: i for i, name in labels.items()})
    size = image_size or teacher.resolution
    common = dict(classifier_projection_layers=0, freeze_encoder=False, image_size=size, eval_image_size=None)
    torch.manual_seed(seed)
    if timm.is_model(spec) and not Path(spec).exists():
        architecture: dict[str, Any] = {"backbone": spec}
        if getattr(teacher.config, "model_type", None) == "simclr" and teacher.config.backbone == spec:
            architecture = {name: getattr(teacher.config, name) for name in ENCODER_FIELDS}
            architecture["batch_norm_eps"] = teacher.config.batch_norm_eps
        mean, std = _normalisation(teacher)
        try:
            config = SimCLRConfig(
                projection_layers=0, image_mean=mean, image_std=std, **architecture, **classes, **common
            )
            return SimCLRForImageClassification(config)
        except (ValueError, TypeError) as error:
            raise UsageError(f"--student {spec}: {' '.join(str(error).split())}") from error
    check_local_or_hub(spec, "--student")
    check_model_folder(spec, "--student")
    try:
        with reaching_the_hub(f"model {spec}"):
            found = AutoConfig.from_pretrained(spec).model_type
            if found != "simclr":
                raise UsageError(
                    f"--student {spec} is a {found!r} model: pass a timm backbone name or a SimCLR model folder"
                )
            student = SimCLRForImageClassification.from_pretrained(
                spec, **classes, **common, ignore_mismatched_sizes=True
            )
    except OSError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"--student {spec}: neither a timm backbone name nor a model that loads ({reason})") from error
    with torch.no_grad():  # a new classifier (as the linear-evaluation protocol's): never one trained for another task
        nn.init.normal_(student.classifier.weight, std=0.01)
        nn.init.zeros_(student.classifier.bias)
    return student


def _normalisation(teacher: Teacher) -> tuple[list[float], list[float]]:
    """The mean and std a new student normalises with: the teacher's, so that both read pixels alike."""
    if getattr(teacher.config, "model_type", None) == "simclr":
        return list(teacher.config.image_mean), list(teacher.config.image_std)
    mean = getattr(teacher.processor, "image_mean", None)
    std = getattr(teacher.processor, "image_std", None)
    if mean is None or std is None:
        return [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    return [float(v) for v in mean], [float(v) for v in std]


__all__ = [
    "ENCODER_FIELDS",
    "Teacher",
    "build_student",
    "default_temperature",
    "load_teacher",
    "recorded_finetuning",
    "same_architecture",
]
