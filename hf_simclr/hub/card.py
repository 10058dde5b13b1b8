"""The model card (README.md) of a SimCLR model, through `huggingface_hub.ModelCard`: written from a pretraining run
(:func:`build_model_card`), then extended by each evaluation (:func:`update_model_card`). Both render the results
table with :func:`results_section` and name metrics and datasets as :mod:`hf_simclr.hub.records` says.

The Jinja template is `model_cards/simclr.md` at the repository root. Installed from a wheel it is found under
`<prefix>/share/hf_simclr/model_cards/` (a `data-files` entry of the package) or inside the package.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .records import MODEL_CARD, dataset_names, metric_name

TEMPLATE_NAME = "simclr.md"
TASK_TYPE, TASK_NAME = "image-classification", "Image classification (frozen features)"
TAGS = ["simclr", "self-supervised", "image-feature-extraction", "timm"]
RESULTS_HEADING = "## Evaluation results"
FROZEN_FEATURES_INTRO = "Classifiers trained on the frozen features *h* (the encoder is not fine-tuned):"


def find_template(name: str = TEMPLATE_NAME) -> Path:
    """Path of a card template: source checkout or editable install first, then an installed wheel's copies."""
    candidates = [
        Path(__file__).resolve().parents[2] / "model_cards" / name,
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
    task_name: str = TASK_NAME,
) -> list[EvalResult]:
    """Turn evaluation numbers into `model-index` entries (default task: image classification on frozen features).

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
                task_name=task_name,
                dataset_type=result.get("dataset", default_dataset),
                dataset_name=result.get("dataset_name", dataset_name or result.get("dataset", default_dataset)),
                dataset_split=result.get("split", split),
                metric_type=result.get("type", "accuracy"),
                metric_name=metric_name(metric),
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
        results: evaluation numbers in %, see [`eval_results`]; they become the card's `model-index`.
        dataset_name: what the model was pretrained and evaluated on, e.g. `"CIFAR-10"` or a Hub id; None if unknown
            (see [`hf_simclr.hub.records.dataset_names`]).
        dataset_id: the Hub id of that dataset (the `datasets` metadata); by default `dataset_name` if it is one.
        feature_dim: size of the representation h (`model.num_features`).
        timm_repo: repo of the timm-native encoder export, if pushed.
    """
    model_name = repo_id_or_name.rsplit("/", 1)[-1]
    if dataset_id is None and dataset_name:  # a Hub id such as "uoft-cs/cifar10"; a local path never is one
        dataset_id = dataset_names(dataset_name)[1]
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
        results_section=results_section(entries, FROZEN_FEATURES_INTRO),
    )


def results_section(results: Sequence[EvalResult], intro: str) -> str:
    """The card's "Evaluation results" section: ``intro`` and one table row per result (values in %)."""
    if not results:
        return f"{RESULTS_HEADING}\n\nNot evaluated yet.\n"
    lines = [RESULTS_HEADING, "", intro, "", "| Task | Dataset | Metric | Value |", "|---|---|---|---|"]
    for r in results:
        dataset = f"{r.dataset_name} ({r.dataset_split})" if r.dataset_split else r.dataset_name
        value = f"{r.metric_value:.2f}" if isinstance(r.metric_value, float) else r.metric_value
        lines.append(f"| {r.task_name or r.task_type} | {dataset} | {r.metric_name or r.metric_type} | {value} |")
    return "\n".join(lines) + "\n"


def _replaces(new: EvalResult, key: str, old: EvalResult) -> bool:
    # an older card may name the same metric by its raw key
    same_place = (new.task_type, new.dataset_type, new.dataset_split) == (
        old.task_type,
        old.dataset_type,
        old.dataset_split,
    )
    return same_place and old.metric_name in {key, new.metric_name}


def _replace_section(text: str, section: str) -> str:
    # the section runs from its heading to the next level-2 heading (or the end of the card)
    match = re.search(rf"^{re.escape(RESULTS_HEADING)}\s*$.*?(?=^## |\Z)", text, flags=re.M | re.S)
    if match:
        return text[: match.start()] + section + ("\n" if match.end() < len(text) else "") + text[match.end() :]
    citation = re.search(r"^## Citation", text, flags=re.M)
    if citation:
        return text[: citation.start()] + section + "\n" + text[citation.start() :]
    return text.rstrip() + "\n\n" + section


def _load_or_create_card(path: Path, model_name: str, pipeline_tag: str | None) -> ModelCard:
    if path.exists():
        return ModelCard.load(path)
    data = ModelCardData(library_name="transformers", pipeline_tag=pipeline_tag, model_name=model_name)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n# {model_name}\n")


def update_model_card(
    model_dir: str | Path,
    metrics: Mapping[str, float],
    dataset: str,
    *,
    split: str = "test",
    dataset_id: str | None = None,
    task_name: str | None = None,
    model_name: str | None = None,
    pipeline_tag: str | None = None,
    intro: str = "Top-1 / top-5 accuracy in %.",
) -> Path:
    """Add ``metrics`` (fractions in [0, 1], stored as %) to the card in ``model_dir``, creating a card if none.

    Entries already on the card for the same task, dataset, split and metric are replaced. ``dataset`` is the name
    shown; ``dataset_id`` the Hub id if there is one (``model-index`` dataset type, else ``dataset``).
    """
    model_dir = Path(model_dir)
    path = model_dir / MODEL_CARD
    rows = [{"metric": k, "value": round(100 * float(v), 2)} for k, v in metrics.items()]
    new = eval_results(rows, dataset, dataset_id, split, task_name=task_name or TASK_NAME)
    card = _load_or_create_card(path, model_name or model_dir.resolve().name, pipeline_tag)
    data = card.data
    pairs = list(zip(new, metrics, strict=True))
    kept = [r for r in (data.eval_results or []) if not any(_replaces(n, k, r) for n, k in pairs)]
    data.eval_results = kept + new
    data.model_name = data.model_name or model_name or model_dir.resolve().name
    if dataset_id and dataset_id not in (data.datasets or []):
        data.datasets = [*(data.datasets or []), dataset_id]
    card.text = _replace_section(card.text, results_section(data.eval_results, intro))
    model_dir.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path


__all__ = [
    "TEMPLATE_NAME",
    "build_model_card",
    "eval_results",
    "find_template",
    "results_section",
    "update_model_card",
]
