"""`scripts/linear_eval.py`: kNN and linear evaluation of any image backbone on frozen features.

Features are extracted once per split (the encoder in eval mode, the evaluation preprocessing of its image processor,
no augmentation); kNN and the linear probe then run on them. Results go to ``eval_results.json``, the model card and
plots in the output folder (the model folder itself for a local model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoImageProcessor, AutoModel

from ..configuration_simclr import check_image_processor_config
from ..data import DatasetArguments, find_held_out_split, load_labelled_split
from ..errors import UsageError
from ..hub.card import update_model_card
from ..hub.locate import check_local_or_hub, reaching_the_hub
from ..hub.output_lock import OutputDirLock
from ..hub.records import TRAIN_LOG, dataset_names, public_model_name, write_eval_results
from ..modeling_simclr import build_image_processor
from .arguments import LinearEvalArguments, default_output_dir
from .arguments import parse_linear_eval_args as parse_args
from .features import extract_features
from .knn import knn_accuracy
from .linear_probe import linear_probe
from .neighbours import NEIGHBOURS_IMAGE, draw_neighbour_grid
from .plots import missing_plot_packages, split_label


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_encoder(model_id: str, random_init: bool = False, seed: int = 0) -> tuple[nn.Module, Any]:
    """Any ``AutoModel`` image backbone and its image processor (a SimCLR folder without one gets the default).

    With ``random_init``, the same architecture with freshly initialised weights: the baseline to beat. Weights that
    do not fit the config (a backbone tensor missing, or one of the backbone's own left over) are a ``UsageError``:
    the model would be partly random.
    """
    check_local_or_hub(model_id, "--model")
    try:
        with reaching_the_hub(f"model {model_id}"):
            if random_init:
                torch.manual_seed(seed)
                model = AutoModel.from_config(AutoConfig.from_pretrained(model_id))
            else:
                model, loading = AutoModel.from_pretrained(model_id, output_loading_info=True)
                check_weights_match(model_id, model, loading)
    except OSError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(
            f"--model {model_id}: cannot load a model ({reason}); pass a folder with config.json and weights or a "
            "Hub model id"
        ) from error
    try:
        processor = AutoImageProcessor.from_pretrained(model_id)
    except (OSError, ValueError) as error:
        if getattr(model.config, "model_type", None) != "simclr":
            raise UsageError(
                f"--model {model_id} has no image processor (preprocessor_config.json); save one with "
                "AutoImageProcessor.save_pretrained next to the model"
            ) from error
        processor = build_image_processor(model.config)
    try:  # any model's processor, not only a SimCLR one's: a size of 16000 px would allocate gigabytes per image
        check_image_processor_config(processor.to_dict(), f"--model {model_id}: its image processor")
    except ValueError as error:
        raise UsageError(str(error)) from error
    return model.eval(), processor


def check_weights_match(model_id: str, model: nn.Module, loading: dict[str, list]) -> None:
    """Refuse a model that ``from_pretrained`` left partly randomly initialised.

    Missing weights are refused, except a SimCLR model's projection head (the features h come before it, and a
    fine-tuned SimCLR folder has none). Left-over weights are refused when the checkpoint holds the same architecture;
    a task model's (e.g. ``ResNetForImageClassification``) head is not part of its backbone and may be left over.
    """
    simclr = getattr(model.config, "model_type", None) == "simclr"
    missing = [key for key in loading["missing_keys"] if not (simclr and key.startswith("projection_head."))]
    mismatched = [entry[0] if isinstance(entry, (tuple, list)) else entry for entry in loading["mismatched_keys"]]
    architectures = getattr(model.config, "architectures", None) or [type(model).__name__]
    unexpected = list(loading["unexpected_keys"]) if type(model).__name__ in architectures else []
    for problem, keys in (("has no weights for", missing), ("has weights of another shape for", mismatched)):
        if keys:
            raise UsageError(
                f"--model {model_id}: its config does not match its weights: it {problem} {len(keys)} tensors of "
                f"the {type(model).__name__} its config describes (e.g. {sorted(keys)[0]}); fix config.json or the "
                "weights"
            )
    if unexpected:
        raise UsageError(
            f"--model {model_id}: its config does not match its weights: {len(unexpected)} weights are not part of "
            f"the {type(model).__name__} its config describes (e.g. {sorted(unexpected)[0]}); fix config.json or the "
            "weights"
        )


def load_train_and_held_out(args: DatasetArguments) -> tuple[tuple, tuple, str]:
    """``(train, held_out, held-out split name)`` of a labelled dataset, each ``(dataset, label column, class
    names)``; the held-out split is ``--eval_split``, else ``validation``, else ``test``."""
    load = dict(image_column=args.image_column, label_column=args.label_column, **args.load_kwargs())
    train = load_labelled_split(args.dataset, args.train_split, **load)
    found = find_held_out_split(args.dataset, args.eval_split, args.image_column, **args.load_kwargs())
    if found is None:
        raise UsageError(f"{args.dataset or 'the dataset'} has no 'validation' or 'test' split: pass --eval_split")
    held_out = load_labelled_split(args.dataset, found[1], **{**load, "label_column": train[1]}, class_names=train[2])
    return train, held_out, found[1]


def linear_eval(args: LinearEvalArguments) -> dict[str, Any]:
    """Run the evaluation described by ``args``; returns the results entry's metrics (fractions in [0, 1])."""
    check_local_or_hub(args.model, "--model")
    with OutputDirLock(args.output_dir):  # before any work: the folder must be writable and not in use
        return _linear_eval(args)


def _linear_eval(args: LinearEvalArguments) -> dict[str, Any]:
    (train_ds, label_column, class_names), (test_ds, _, _), split = load_train_and_held_out(args)
    model, processor = load_encoder(args.model, random_init=args.random_init, seed=args.seed)
    device = default_device()
    extract = dict(image_processor=processor, image_column=args.image_column, label_column=label_column)
    extract.update(batch_size=args.batch_size, num_workers=args.num_workers, device=device)
    train_x, train_y = extract_features(model, train_ds, desc=f"{args.train_split} features", **extract)
    test_x, test_y = extract_features(model, test_ds, desc=f"{split} features", **extract)
    num_classes = len(class_names)
    metrics = knn_accuracy(train_x, train_y, test_x, test_y, num_classes=num_classes, device=device)
    probe = linear_probe(
        train_x,
        train_y,
        test_features=test_x,
        test_labels=test_y,
        epochs=args.epochs,
        val_fraction=args.val_fraction,
        num_classes=num_classes,
        seed=args.seed,
        device=device,
    )
    metrics.update(linear_top1=probe["linear_top1"], linear_top5=probe["linear_top5"])
    print(", ".join(f"{key} {100 * value:.2f}%" for key, value in metrics.items()))
    details = {
        "model": public_model_name(args.model),
        "random_init": args.random_init,
        "train_split": args.train_split,
        "num_train": len(train_y),
        "num_test": len(test_y),
        "feature_dim": train_x.shape[1],
        "linear_probe": {k: v for k, v in probe.items() if not k.startswith("linear_")},
        "linear_probe_epochs": args.epochs,
    }
    if len(train_x) == len(train_ds) and len(test_x) == len(test_ds):  # rows and features align: none was unreadable
        where = split_label(dataset_names(args.dataset)[0], split)
        title = f"Held-out images ({where}) and their nearest training images"
        train, held_out = (train_ds, train_x, train_y), (test_ds, test_x, test_y)
        grid = Path(args.output_dir) / NEIGHBOURS_IMAGE
        grid.parent.mkdir(parents=True, exist_ok=True)
        draw_neighbour_grid(train, held_out, class_names, args.image_column, grid, title=title)
    write_results(args, split, metrics, details)
    written = "results, neighbours and card"
    if args.no_plots:
        pass
    elif missing := missing_plot_packages():  # the plots are optional: the numbers do not need them
        print(f"no plots: pip install 'hf-simclr[plots]' ({', '.join(missing)}) to draw them, or pass --no_plots")
    else:
        draw_plots(args, split, test_x, test_y, class_names)
        written = "results, neighbours, card and plots"
    print(f"{written} in {args.output_dir}")
    return metrics


def write_results(args: LinearEvalArguments, split: str, metrics: dict[str, float], details: dict[str, Any]) -> None:
    """``eval_results.json`` and the model card's results in ``--output_dir``."""
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    dataset_name, dataset_id = dataset_names(args.dataset)
    write_eval_results(
        output_dir, "linear_eval", dataset_name, metrics, split=split, dataset_id=dataset_id, details=details
    )
    update_model_card(output_dir, model_name=public_model_name(args.model).rsplit("/", 1)[-1])


def draw_plots(
    args: LinearEvalArguments, split: str, test_x: torch.Tensor, test_y: torch.Tensor, class_names: list[str]
) -> None:
    """A t-SNE of the held-out features and, for a trained model with a training log, its training curves."""
    from .plots import plot_embedding, plot_training_curves

    output_dir = Path(args.output_dir)
    title = f"t-SNE of {split_label(dataset_names(args.dataset)[0], split)} features"
    plot_embedding(test_x, test_y, output_dir / "tsne.png", class_names, args.max_plot_points, args.seed, title)
    log = Path(args.model) / TRAIN_LOG
    if log.is_file() and not args.random_init:  # the baseline never trained
        plot_training_curves(log, output_dir / "training_curves.png")


__all__ = [
    "LinearEvalArguments",
    "default_output_dir",
    "linear_eval",
    "load_encoder",
    "load_train_and_held_out",
    "parse_args",
]
