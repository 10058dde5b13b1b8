"""Arguments and entry points of `scripts/convert_official_checkpoint.py` and `scripts/evaluate_imagenet.py`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..cli import ArgumentParser, parse_arguments
from ..errors import UsageError
from ..hub.locate import check_model_folder

__all__ = [
    "ConvertArguments",
    "EvaluateImageNetArguments",
    "convert",
    "evaluate",
    "parse_convert_args",
    "parse_evaluate_args",
]


@dataclass
class ConvertArguments:
    """Options of `scripts/convert_official_checkpoint.py SOURCE OUTPUT_DIR`."""

    push_to_hub: str | None = field(default=None, metadata={"help": "also upload the folder to this Hub model repo"})
    private: bool = field(default=False, metadata={"help": "create the Hub repo as private (with --push_to_hub)"})
    classifier_projection_layers: int | None = field(
        default=None,
        metadata={
            "help": "projection-head layers below the classifier; default: 1 for SimCLRv2 finetuned_1pct and "
            "finetuned_10pct (recognised by the release folder in SOURCE), else 0"
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "write into a non-empty OUTPUT_DIR, replacing its files"})

    def __post_init__(self) -> None:
        if self.classifier_projection_layers is not None and not 0 <= self.classifier_projection_layers <= 3:
            raise UsageError(f"--classifier_projection_layers must be 0 to 3, got {self.classifier_projection_layers}")


def parse_convert_args(
    argv: Sequence[str] | None = None, description: str | None = None
) -> tuple[str, str, ConvertArguments]:
    """``(source, output_dir, options)`` from ``argv`` (default: the command line)."""
    parser = ArgumentParser(ConvertArguments, description=description)
    parser.add_argument(
        "source",
        help="official TensorFlow checkpoint (model.ckpt-N prefix or its folder), a lightly-ai .pth copy, or its "
        "Hub repo id (e.g. lightly-ai/simclrv1-imagenet1k-resnet50-1x)",
    )
    parser.add_argument("output_dir", help="folder to write the converted model to (new or empty)")
    args, positional = parser.parse(argv)
    return positional.source, positional.output_dir, args


def convert(source: str, output_dir: str, args: ConvertArguments) -> Path:
    """Convert, print what was converted (and the published top-1, marked as such), and push when asked."""

    from ..hub.push import check_repo_id, push_folder_to_hub, pushed_line, retry_command
    from .convert import convert_official_checkpoint

    if args.push_to_hub:  # a bad repo id fails before the conversion, not after it
        check_repo_id(args.push_to_hub)
    result = convert_official_checkpoint(
        source,
        output_dir,
        classifier_projection_layers=args.classifier_projection_layers,
        repo_id=args.push_to_hub,
        overwrite=args.overwrite,
    )
    config, architecture = result.config, result.weights.architecture
    head = f"{config.projection_layers}-layer projection head" if config.projection_layers else "no projection head"
    classifier = "no classifier"
    if architecture.num_classes:
        kept = config.classifier_projection_layers
        classifier = f"classifier to {config.num_labels} classes on " + (f"head layer {kept}" if kept else "h")
    name = f"{result.variant.name}: " if result.variant else ""
    print(f"{name}{architecture.name}, {head}, {classifier} -> {result.output_dir}")
    published = result.variant.published_top1 if result.variant else None
    if published:
        print(f"published ImageNet top-1 ({published[1]}): {published[0]}% (the paper's number, not measured here)")
    for note in result.weights.notes:
        print(f"note: {note}")
    if args.push_to_hub:
        retry = retry_command(result.output_dir, args.push_to_hub, private=args.private)
        print(pushed_line(push_folder_to_hub(result.output_dir, args.push_to_hub, private=args.private, retry=retry)))
    return result.output_dir


@dataclass
class EvaluateImageNetArguments:
    """Arguments of `scripts/evaluate_imagenet.py`."""

    model: str = field(metadata={"help": "model folder or Hub id with a 1000-class ImageNet classifier"})
    val_dir: str = field(
        metadata={"help": "ImageNet validation folder: one sub-folder per class, named by WordNet id (n01440764/)"}
    )
    batch_size: int = field(default=64, metadata={"help": "images per batch"})
    num_workers: int = field(default=4, metadata={"help": "DataLoader processes decoding and resizing images"})
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first N images (a quick check)"})
    device: str | None = field(default=None, metadata={"help": "default: cuda if available, else cpu"})
    output_json: str | None = field(default=None, metadata={"help": "also write the result to this JSON file"})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "load the model with the code saved with it instead of hf_simclr's"}
    )

    def __post_init__(self) -> None:
        for name in ("batch_size", "limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise UsageError(f"--num_workers must be 0 or more, got {self.num_workers}")


def parse_evaluate_args(argv: Sequence[str] | None = None, description: str | None = None) -> EvaluateImageNetArguments:
    return parse_arguments(EvaluateImageNetArguments, argv, description)


def evaluate(args: EvaluateImageNetArguments) -> dict:
    """Top-1 / top-5 of `args.model` on `args.val_dir`, printed (and written to `args.output_json`)."""
    from transformers import AutoModelForImageClassification

    from .. import SimCLRConfig  # noqa: F401 - registers the SimCLR Auto classes
    from .imagenet import evaluate_imagenet, write_result

    check_model_folder(args.model, "--model")
    if not Path(args.val_dir).is_dir():
        raise UsageError(f"{args.val_dir} is not a folder: pass the ImageNet validation folder")
    model = AutoModelForImageClassification.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    result = evaluate_imagenet(
        model,
        args.val_dir,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        limit=args.limit,
    )
    print(f"top-1 {result.top1:.2f}%  top-5 {result.top5:.2f}%  on {result.images} images ({result.preprocessing})")
    if args.output_json:
        write_result(result, args.output_json)
    return asdict(result)
