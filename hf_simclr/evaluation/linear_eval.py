"""`scripts/linear_eval.py`: kNN and linear evaluation of any image backbone on frozen features.

Features are extracted once per split (the encoder in eval mode, the evaluation preprocessing of its image processor,
no augmentation); kNN and the linear probe then run on them. Results go to ``eval_results.json``, the model card and
plots in the output folder (the model folder itself for a local model).
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

import datasets
import torch
from torch import nn
from transformers import AutoConfig, AutoImageProcessor, AutoModel

from .data import dataset_load_kwargs, find_label_column, load_image_dataset
from .evaluate import extract_features, knn_accuracy, linear_probe
from .plots import missing_plot_packages

logger = logging.getLogger(__name__)

DEFAULT_DATASET_NAME = "Fashion-MNIST (embedded subset)"  # the name the pretraining card uses for the same data


def load_labelled_split(
    dataset: Any = None,
    split: str = "train",
    image_column: str = "image",
    label_column: str = "label",
    **load_kwargs: Any,
) -> tuple[datasets.Dataset, list[str]]:
    """One split of a labelled image dataset (``None``: the embedded default data) and its class names.

    Images stay undecoded; string labels are encoded to class ids. Raises ``ValueError`` naming the fix.
    """
    try:
        ds = load_image_dataset(dataset, split=split, image_column=image_column, check=4, **load_kwargs)
    except (KeyError, datasets.exceptions.DatasetNotFoundError) as error:
        raise ValueError(f"split {split!r} of {dataset or 'the default dataset'}: {error}") from error
    if not isinstance(ds, datasets.Dataset):
        raise ValueError("evaluation needs a map-style dataset; do not pass a streaming dataset")
    if label_column not in ds.column_names:
        found = find_label_column(ds)
        hint = f"--label_column {found[0]}" if found else "--label_column <name>"
        raise ValueError(f"label column {label_column!r} not found; available columns: {ds.column_names}; pass {hint}")
    found = find_label_column(ds, label_column)
    if found is not None:
        return ds, found[1]
    dtype = getattr(ds.features[label_column], "dtype", None)
    if dtype == "string":
        ds = ds.class_encode_column(label_column)
        return ds, list(ds.features[label_column].names)
    if dtype is None or not dtype.startswith(("int", "uint")):
        raise ValueError(f"label column {label_column!r} holds {dtype or 'non-scalar'} values; it must hold class ids")
    labels = ds[label_column]
    if labels and min(labels) < 0:
        raise ValueError(f"label column {label_column!r} has negative values; unlabelled rows cannot be evaluated")
    return ds, [str(i) for i in range(max(labels) + 1 if labels else 0)]


def dataset_names(dataset: str | None) -> tuple[str, str | None]:
    """(name shown on the card, Hub dataset id or None) for a ``--dataset`` value."""
    if dataset is None:
        return DEFAULT_DATASET_NAME, None
    if Path(dataset).exists():  # a local folder or file: its name, not a path of this machine, goes on the card
        return Path(dataset).resolve().name, None
    return dataset, dataset if re.fullmatch(r"[\w.-]+/[\w.-]+", dataset) else None


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_encoder(model_id: str, random_init: bool = False, seed: int = 0) -> tuple[nn.Module, Any]:
    """Any ``AutoModel`` image backbone and its image processor (a SimCLR folder without one gets the default).

    With ``random_init``, the same architecture with freshly initialised weights: the baseline to beat.
    """
    try:
        if random_init:
            torch.manual_seed(seed)
            model = AutoModel.from_config(AutoConfig.from_pretrained(model_id))
        else:
            model = AutoModel.from_pretrained(model_id)
    except OSError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"--model {model_id}: cannot load a model ({reason}); pass a folder with config.json and weights or a "
            "Hub model id"
        ) from error
    try:
        processor = AutoImageProcessor.from_pretrained(model_id)
    except (OSError, ValueError) as error:
        if getattr(model.config, "model_type", None) != "simclr":
            raise ValueError(
                f"--model {model_id} has no image processor (preprocessor_config.json); save one with "
                "AutoImageProcessor.save_pretrained next to the model"
            ) from error
        from .export import build_image_processor

        processor = build_image_processor(model.config)
    return model.eval(), processor


def add_labelled_data_arguments(parser: argparse.ArgumentParser, train_help: str) -> None:
    """The flags that choose a labelled dataset and its splits, shared by the evaluation scripts."""
    add = parser.add_argument
    add("--dataset", default=None, help="Hub dataset id, image folder or parquet/arrow file(s); default: the embedded "
        "Fashion-MNIST subset")  # fmt: skip
    add("--dataset_config", default=None, help="configuration name of a Hub dataset")
    add("--image_column", default="image", help="column holding the images")
    add("--label_column", default="label", help="column holding the class labels")
    add("--train_split", default="train", help=train_help)
    add("--test_split", default="test", help="split the accuracy is reported on")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="kNN (k=20, 200) and linear evaluation of a frozen image encoder (SimCLR or any AutoModel "
        "backbone with a pooled output).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--model", required=True, help="model folder or Hub model id")
    add_labelled_data_arguments(parser, train_help="split the classifiers are trained on")
    add("--batch_size", type=int, default=256, help="images per batch during feature extraction")
    add("--num_workers", type=int, default=2, help="DataLoader worker processes for decoding images")
    add("--epochs", type=int, default=100, help="epochs of the linear classifier")
    add("--val_fraction", type=float, default=0.1, help="train share held out to choose lr and weight decay")
    add("--output_dir", default=None, help="where results, plots and the card go; default: the model folder if "
        "local, else ./linear_eval/<model id>")  # fmt: skip
    add("--seed", type=int, default=0, help="seed of the validation split, the classifier and the plots")
    add("--no_plots", action="store_true", help="skip the t-SNE and training-curve plots")
    add("--max_plot_points", type=int, default=2000, help="test images in the t-SNE plot")
    add("--random_init", action="store_true", help="evaluate the model's architecture at random initialisation "
        "instead of its weights: the baseline pretraining must beat")  # fmt: skip
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for name in ("batch_size", "epochs", "max_plot_points"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.num_workers < 0:
        raise ValueError(f"--num_workers must be 0 or more, got {args.num_workers}")
    if not 0 < args.val_fraction < 1:
        raise ValueError(f"--val_fraction must be between 0 and 1 (exclusive), got {args.val_fraction}")
    if args.output_dir is None:
        local = Path(args.model).is_dir() and not args.random_init  # a baseline must not overwrite the model's card
        suffix = "-random-init" if args.random_init else ""
        name = Path(args.model.rstrip("/")).name if Path(args.model).is_dir() else args.model.replace("/", "--")
        args.output_dir = args.model if local else str(Path("linear_eval") / f"{name}{suffix}")
    if Path(args.output_dir).is_file():
        raise ValueError(f"--output_dir {args.output_dir} is a file; choose a folder")
    if not args.no_plots and (missing := missing_plot_packages()):
        raise ValueError(f"the plots need {', '.join(missing)}: pip install 'hf-simclr[plots]', or pass --no_plots")
    return args


def linear_eval(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation described by ``args`` (see :func:`build_parser`); returns the results entry's metrics."""
    from .plots import TRAIN_LOG, plot_embedding, plot_training_curves
    from .results import update_model_card, write_eval_results

    load_kwargs = dataset_load_kwargs(args.dataset_config)
    splits = {
        split: load_labelled_split(args.dataset, split, args.image_column, args.label_column, **load_kwargs)
        for split in (args.train_split, args.test_split)
    }
    (train_ds, class_names), (test_ds, _) = splits[args.train_split], splits[args.test_split]
    model, processor = load_encoder(args.model, random_init=args.random_init, seed=args.seed)
    device = default_device()
    features = {}
    for name, ds in ((args.train_split, train_ds), (args.test_split, test_ds)):
        features[name] = extract_features(
            model, ds, image_processor=processor, image_column=args.image_column, label_column=args.label_column,
            batch_size=args.batch_size, num_workers=args.num_workers, device=device, desc=f"{name} features",
        )  # fmt: skip
    (train_x, train_y), (test_x, test_y) = features[args.train_split], features[args.test_split]
    num_classes = max(len(class_names), int(max(train_y.max(), test_y.max())) + 1)
    metrics = knn_accuracy(train_x, train_y, test_x, test_y, num_classes=num_classes, device=device)
    probe = linear_probe(
        train_x, train_y, test_features=test_x, test_labels=test_y, epochs=args.epochs, val_fraction=args.val_fraction,
        num_classes=num_classes, seed=args.seed, device=device,
    )  # fmt: skip
    metrics.update(linear_top1=probe["linear_top1"], linear_top5=probe["linear_top5"])
    print(", ".join(f"{key} {100 * value:.2f}%" for key, value in metrics.items()))

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    dataset_name, dataset_id = dataset_names(args.dataset)
    details = {
        "model": args.model,
        "random_init": args.random_init,
        "train_split": args.train_split,
        "num_train": len(train_y),
        "num_test": len(test_y),
        "feature_dim": train_x.shape[1],
        "linear_probe": {k: v for k, v in probe.items() if not k.startswith("linear_")},
        "linear_probe_epochs": args.epochs,
    }
    write_eval_results(output_dir, "linear_eval", dataset_name, metrics, split=args.test_split, details=details)
    update_model_card(
        output_dir, metrics, dataset_name, split=args.test_split, dataset_id=dataset_id,
        model_name=Path(args.model.rstrip("/")).name,
        intro="Classifiers trained on the frozen features (the encoder is not fine-tuned): weighted kNN "
        "(cosine, temperature 0.07) and a linear classifier; accuracy in %.",
    )  # fmt: skip
    if not args.no_plots:
        plot_embedding(
            test_x, test_y, output_dir / "tsne.png", class_names, args.max_plot_points, args.seed,
            title=f"t-SNE of {dataset_name} ({args.test_split}) features",
        )  # fmt: skip
        log = Path(args.model) / TRAIN_LOG
        if log.is_file() and not args.random_init:  # the baseline never trained
            plot_training_curves(log, output_dir / "training_curves.png")
    print(f"results, card and plots in {output_dir}")
    return metrics


__all__ = [
    "add_labelled_data_arguments",
    "build_parser",
    "dataset_names",
    "linear_eval",
    "load_encoder",
    "load_labelled_split",
    "parse_args",
]
