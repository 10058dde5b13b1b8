"""Plots written next to evaluation results: a 2-D map of the features and the pretraining curves.

The training log is ``train_log.jsonl`` in the model folder, one JSON object a line, written by the trainer::

    {"step": 100, "epoch": 2.0, "loss": 5.31, "lr": 0.29, ...}               # every log_every steps
    {"step": 250, "epoch": 5.0, "knn_top1_k20": 0.71, "knn_top1_k200": 0.69} # after a kNN evaluation

``step`` (optimizer steps) is required; ``epoch`` (float), ``loss``, ``lr`` and any ``knn_top1*`` accuracies
(fractions in [0, 1]) are optional, so rows of different kinds can interleave. ``knn_*_random_init`` keys hold the
same evaluation of the encoder before training and are drawn as a dashed baseline.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

TRAIN_LOG = "train_log.jsonl"


def read_train_log(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``train_log.jsonl`` (see the module docstring); unparsable lines (e.g. a line cut short by an
    interrupted run) and rows without ``step`` are skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
            rows.append(row)
    return rows


def missing_plot_packages(tsne: bool = True) -> list[str]:
    """The packages the plots need that are not installed (they come with `pip install "hf-simclr[plots]"`)."""
    import importlib.util

    needed = ["matplotlib", "sklearn"] if tsne else ["matplotlib"]
    return [name for name in needed if importlib.util.find_spec(name) is None]


def _figure(width: float, height: float, ncols: int = 1):
    # Figure without pyplot: no global state, no GUI backend, safe in any thread or headless job
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _knn_label(key: str) -> str:
    match = re.fullmatch(r"knn_top(\d+)_k(\d+)", key)
    return f"kNN top-{match[1]} (k={match[2]})" if match else key


def plot_training_curves(
    log: str | Path | Sequence[dict[str, Any]], path: str | Path, loss_title: str = "NT-Xent loss"
) -> Path | None:
    """Loss (left) and, where the log has them, kNN top-1 accuracies in % (right) against epochs (steps if the log
    has no epochs). Returns the written path, or ``None`` when the log holds neither losses nor kNN accuracies."""
    rows = read_train_log(log) if isinstance(log, (str, Path)) else list(log)
    x_key = "epoch" if rows and all("epoch" in row for row in rows) else "step"
    loss_rows = [row for row in rows if isinstance(row.get("loss"), (int, float))]
    knn_keys = sorted({k for row in rows for k in row if k.startswith("knn_top") and not k.endswith("random_init")})
    if not loss_rows and not knn_keys:
        return None
    fig, axes = _figure(10 if knn_keys else 5.5, 3.8, ncols=2 if knn_keys else 1)
    loss_ax = axes[0]
    if loss_rows:
        loss_ax.plot([r[x_key] for r in loss_rows], [r["loss"] for r in loss_rows], color="tab:blue")
    loss_ax.set(title=loss_title, xlabel=x_key, ylabel="loss")
    if knn_keys:
        knn_ax = axes[1]
        for i, key in enumerate(knn_keys):
            color = f"C{i + 1}"
            points = [(r[x_key], 100 * r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            knn_ax.plot(*zip(*points, strict=True), marker="o", markersize=3, color=color, label=_knn_label(key))
            baseline = [r[f"{key}_random_init"] for r in rows if isinstance(r.get(f"{key}_random_init"), (int, float))]
            if baseline:
                knn_ax.axhline(100 * baseline[-1], color=color, linestyle="--", linewidth=1,
                               label=f"{_knn_label(key)}, random init")  # fmt: skip
        knn_ax.set(title="kNN accuracy on held-out data", xlabel=x_key, ylabel="accuracy (%)")
        knn_ax.legend(fontsize="small")
    for ax in axes:
        ax.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def plot_embedding(
    features: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    path: str | Path,
    class_names: Sequence[str] | None = None,
    max_points: int = 2000,
    seed: int = 0,
    title: str = "t-SNE of test features",
) -> Path:
    """t-SNE of (at most ``max_points``, sampled with ``seed``) L2-normalised features, one colour per class.

    The features are reduced to 50 dimensions with PCA first, the usual step that keeps t-SNE fast.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels)
    if len(features) < 5:
        raise ValueError(f"a 2-D projection needs at least 5 points, got {len(features)}")
    rng = np.random.default_rng(seed)
    if len(features) > max_points:
        keep = np.sort(rng.choice(len(features), max_points, replace=False))
        features, labels = features[keep], labels[keep]
    features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    if features.shape[1] > 50 and len(features) > 50:
        features = PCA(n_components=50, random_state=seed).fit_transform(features)
    perplexity = float(min(30, (len(features) - 1) / 3))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)

    fig, (ax,) = _figure(7, 6)
    classes = np.unique(labels)
    cmap = "tab10" if len(classes) <= 10 else "tab20"
    scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap=cmap, s=6, alpha=0.8)
    if len(classes) <= 20:
        names = [class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c) for c in classes]
        handles = [
            ax.plot([], [], "o", color=scatter.cmap(scatter.norm(c)), label=name)[0]
            for c, name in zip(classes, names, strict=True)
        ]
        ax.legend(handles=handles, fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set(title=title, xticks=[], yticks=[])
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


__all__ = ["TRAIN_LOG", "plot_embedding", "plot_training_curves", "read_train_log"]
