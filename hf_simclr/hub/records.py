"""Evaluation results where users look: ``eval_results.json`` and the model card (README.md) of a model folder.

``eval_results.json`` holds ``{"results": [entry, ...]}``; an entry is one evaluation of the model on one dataset::

    {"evaluation": "linear_eval", "dataset": "Fashion-MNIST (embedded subset)", "split": "test",
     "metrics": {"knn_top1_k20": 0.81, "linear_top1": 0.84, ...},   # fractions in [0, 1]
     "details": {...}, "date": "2025-01-01T00:00:00+00:00"}

A new entry replaces the one with the same evaluation, dataset and split; the others are kept. The card gets the
metrics as percentages in its ``model-index`` metadata (rendered by the Hub) and in its "Evaluation results" table.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .model_card import METRIC_NAMES
from .model_card import eval_results as card_eval_results

RESULTS_FILE = "eval_results.json"
_SECTION = "## Evaluation results"
# Names on the card for the keys hf_simclr's evaluations report (model_card.METRIC_NAMES covers the others).
NAMES = {
    "knn_top1_k20": "kNN top-1 accuracy (k=20)",
    "knn_top1_k200": "kNN top-1 accuracy (k=200)",
    "finetune_top1": "Top-1 accuracy",
    "finetune_top5": "Top-5 accuracy",
}


def write_eval_results(
    output_dir: str | Path,
    evaluation: str,
    dataset: str,
    metrics: Mapping[str, float],
    *,
    split: str = "test",
    details: Mapping[str, Any] | None = None,
) -> Path:
    """Merge one entry (see the module docstring) into ``output_dir/eval_results.json``; returns the file."""
    path = Path(output_dir) / RESULTS_FILE
    entries: list[dict[str, Any]] = []
    if path.exists():
        try:
            entries = list(json.loads(path.read_text()).get("results", []))
        except (json.JSONDecodeError, AttributeError):
            entries = []  # a hand-edited or truncated file must not block writing new results
    key = (evaluation, dataset, split)
    entries = [e for e in entries if (e.get("evaluation"), e.get("dataset"), e.get("split")) != key]
    entries.append(
        {
            "evaluation": evaluation,
            "dataset": dataset,
            "split": split,
            "metrics": dict(metrics),
            "details": dict(details or {}),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"results": entries}, indent=2) + "\n")
    return path


def _replaces(new: EvalResult, key: str, old: EvalResult) -> bool:
    # a card written by the trainer may name the same metric by its raw key or model_card's name
    names = {key, new.metric_name, METRIC_NAMES.get(key)}
    return (new.task_type, new.dataset_type, new.dataset_split) == (
        old.task_type,
        old.dataset_type,
        old.dataset_split,
    ) and old.metric_name in names


def _results_section(results: list[EvalResult], intro: str) -> str:
    lines = [_SECTION, "", intro, "", "| Task | Dataset | Metric | Value |", "|---|---|---|---|"]
    for r in results:
        dataset = f"{r.dataset_name} ({r.dataset_split})" if r.dataset_split else r.dataset_name
        value = f"{r.metric_value:.2f}" if isinstance(r.metric_value, float) else r.metric_value
        lines.append(f"| {r.task_name or r.task_type} | {dataset} | {r.metric_name or r.metric_type} | {value} |")
    return "\n".join(lines) + "\n"


def _replace_section(text: str, section: str) -> str:
    # the section runs from its heading to the next level-2 heading (or the end of the card)
    match = re.search(rf"^{re.escape(_SECTION)}\s*$.*?(?=^## |\Z)", text, flags=re.M | re.S)
    if match:
        return text[: match.start()] + section + ("\n" if match.end() < len(text) else "") + text[match.end() :]
    citation = re.search(r"^## Citation", text, flags=re.M)
    if citation:
        return text[: citation.start()] + section + "\n" + text[citation.start() :]
    return text.rstrip() + "\n\n" + section


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
    path = model_dir / "README.md"
    rows = [{"metric": k, "value": round(100 * float(v), 2)} for k, v in metrics.items()]
    new = card_eval_results(rows, dataset, dataset_id, split)
    for result, key in zip(new, metrics, strict=True):
        result.task_name = task_name or result.task_name
        result.metric_name = NAMES.get(key, result.metric_name)
    if path.exists():
        card = ModelCard.load(path)
    else:
        name = model_name or model_dir.resolve().name
        data = ModelCardData(library_name="transformers", pipeline_tag=pipeline_tag, model_name=name)
        card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n# {name}\n")
    data = card.data
    pairs = list(zip(new, metrics, strict=True))
    kept = [r for r in (data.eval_results or []) if not any(_replaces(n, k, r) for n, k in pairs)]
    data.eval_results = kept + new
    data.model_name = data.model_name or model_name or model_dir.resolve().name
    if dataset_id and dataset_id not in (data.datasets or []):
        data.datasets = [*(data.datasets or []), dataset_id]
    card.text = _replace_section(card.text, _results_section(data.eval_results, intro))
    model_dir.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path


__all__ = ["NAMES", "RESULTS_FILE", "update_model_card", "write_eval_results"]
