"""The model card (README.md) of a pushed SimCLR model, filled from a real run through `huggingface_hub.ModelCard`.

The Jinja template is `model_cards/simclr.md` at the repository root. Installed from a wheel it is found under
`<prefix>/share/hf_simclr/model_cards/` (a `data-files` entry of the package) or inside the package.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

__all__ = ["TEMPLATE_NAME", "build_model_card", "eval_results", "find_template"]

TEMPLATE_NAME = "simclr.md"
TASK_TYPE, TASK_NAME = "image-classification", "Image classification (frozen features)"
TAGS = ["simclr", "self-supervised", "image-feature-extraction", "timm"]
# Pretty names for the metrics hf_simclr.evaluate reports; other keys are shown as given.
METRIC_NAMES = {
    "knn_top1": "kNN top-1 accuracy",
    "knn_top1_k20": "kNN top-1 accuracy (k=20)",
    "knn_top1_k200": "kNN top-1 accuracy (k=200)",
    "knn_top5": "kNN top-5 accuracy",
    "linear_top1": "Linear probe top-1 accuracy",
    "linear_top5": "Linear probe top-5 accuracy",
}


def find_template(name: str = TEMPLATE_NAME) -> Path:
    """Path of a card template: source checkout or editable install first, then an installed wheel's copies."""
    candidates = [
        Path(__file__).resolve().parents[1] / "model_cards" / name,
        Path(sys.prefix) / "share" / "hf_simclr" / "model_cards" / name,
        Path(str(resources.files("hf_simclr"))) / "model_cards" / name,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"model card template {name!r} not found in {', '.join(str(p.parent) for p in candidates)}; "
        "reinstall hf-simclr or pass template_path="
    )


def eval_results(
    results: Mapping[str, float] | Sequence[Mapping[str, Any]],
    dataset_name: str | None,
    dataset_id: str | None = None,
    split: str | None = None,
) -> list[EvalResult]:
    """Turn evaluation numbers into `model-index` entries (task: image classification on frozen features).

    `results` is either `{"knn_top1": 71.2, "linear_top1": 74.0}` or a list of dicts with `metric` and `value` and,
    optionally, `type` (metric id, default "accuracy"), `dataset`, `dataset_name`, `split` and `task_type`.
    """
    if isinstance(results, Mapping):
        results = [{"metric": key, "value": value} for key, value in results.items()]
    default_dataset = dataset_id or dataset_name or "custom"
    out = []
    for result in results:
        metric = str(result["metric"])
        out.append(
            EvalResult(
                task_type=result.get("task_type", TASK_TYPE),
                task_name=TASK_NAME,
                dataset_type=result.get("dataset", default_dataset),
                dataset_name=result.get("dataset_name", dataset_name or result.get("dataset", default_dataset)),
                dataset_split=result.get("split", split),
                metric_type=result.get("type", "accuracy"),
                metric_name=METRIC_NAMES.get(metric, metric),
                metric_value=result["value"],
            )
        )
    return out


def build_model_card(
    repo_id_or_name: str,
    config_dict: Mapping[str, Any],
    training: Mapping[str, Any],
    results: Mapping[str, float] | Sequence[Mapping[str, Any]],
    dataset_name: str | None,
    *,
    dataset_id: str | None = None,
    eval_split: str | None = None,
    license: str = "apache-2.0",
    feature_dim: int | None = None,
    timm_repo: str | None = None,
    template_path: str | Path | None = None,
) -> ModelCard:
    """Fill the SimCLR card template from a run.

    Args:
        repo_id_or_name: `org/name` (used in the loading examples) or a bare model name.
        config_dict: the model's `config.to_dict()`: backbone, projection head, temperature.
        training: settings shown in the training table, e.g. `{"epochs": 100, "batch size": 512, "optimizer": "LARS"}`.
        results: evaluation numbers, see [`eval_results`]; they become the card's `model-index`.
        dataset_name: what the model was pretrained and evaluated on, e.g. `"CIFAR-10"` or a Hub id; None if unknown.
        dataset_id: the Hub id of that dataset (the `datasets` metadata); defaults to `dataset_name` if it has a "/".
        feature_dim: size of the representation h (`model.num_features`).
        timm_repo: repo of the timm-native encoder export, if pushed.
    """
    model_name = repo_id_or_name.rsplit("/", 1)[-1]
    if dataset_id is None and dataset_name and "/" in dataset_name:  # a Hub id such as "uoft-cs/cifar10"
        dataset_id = dataset_name
    entries = eval_results(results, dataset_name, dataset_id, eval_split)
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        tags=list(TAGS),
        datasets=[dataset_id] if dataset_id else None,
        license=license,
        model_name=model_name,
        eval_results=entries or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path or find_template()),
        repo_id=repo_id_or_name,
        model_name=model_name,
        backbone=config_dict.get("backbone", "unknown"),
        projection_dim=config_dict.get("projection_dim"),
        temperature=config_dict.get("temperature"),
        feature_dim=feature_dim,
        dataset_name=dataset_name,
        timm_repo=timm_repo,
        training=dict(training),
        results=entries,
    )
