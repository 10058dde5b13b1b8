"""Plots written next to evaluation results: a 2-D map of the features, the training curves, and held-out images
with their true and predicted segmentation masks.

The curves read a run's log (``train_log.jsonl``, see :mod:`hf_simclr.hub.records`): the loss, and the kNN accuracies
against epochs, with the same evaluation at random initialisation as a dashed baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..hub.records import RANDOM_INIT_SUFFIX, metric_name, read_train_log


def split_label(dataset: str, split: str) -> str:
    """``Fashion-MNIST (embedded subset), test split``: a dataset and split named without doubled parentheses."""
    return f"{dataset}, {split} split"


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


def plot_training_curves(
    log: str | Path | Sequence[dict[str, Any]], path: str | Path, loss_title: str = "NT-Xent loss"
) -> Path | None:
    """Loss (left) and, where the log has them, kNN top-1 accuracies in % (right) against epochs (steps if the log
    has no epochs). Returns the written path, or ``None`` when the log holds neither losses nor kNN accuracies."""
    rows = read_train_log(log) if isinstance(log, (str, Path)) else list(log)
    x_key = "epoch" if rows and all("epoch" in row for row in rows) else "step"
    loss_rows = [row for row in rows if isinstance(row.get("loss"), (int, float))]
    knn_keys = sorted(
        {k for row in rows for k in row if k.startswith("knn_top") and not k.endswith(RANDOM_INIT_SUFFIX)}
    )
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
            knn_ax.plot(*zip(*points, strict=True), marker="o", markersize=3, color=color, label=metric_name(key))
            baseline_key = key + RANDOM_INIT_SUFFIX
            baseline = [r[baseline_key] for r in rows if isinstance(r.get(baseline_key), (int, float))]
            if baseline:
                label = f"{metric_name(key)}, random init"
                knn_ax.axhline(100 * baseline[-1], color=color, linestyle="--", linewidth=1, label=label)
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


def plot_segmentation_examples(
    examples: Sequence[tuple[torch.Tensor, np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    path: str | Path,
    image_mean: Sequence[float],
    image_std: Sequence[float],
) -> Path:
    """One row per example: the image (``(3, H, W)``, normalised with ``image_mean`` / ``image_std``), its true mask
    and the predicted one, in the same colour per class (a legend names the classes)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from ..data.segmentation import IGNORE_INDEX

    colours = [(0.0, 0.0, 0.0), *_class_colours(len(class_names) - 1)]
    cmap = ListedColormap(colours + [(1.0, 1.0, 1.0)])  # the last colour: ignored pixels
    fig = Figure(figsize=(7.5, 2.4 * len(examples)), layout="constrained")
    axes = fig.subplots(len(examples), 3, squeeze=False)
    mean, std = torch.tensor(image_mean)[:, None, None], torch.tensor(image_std)[:, None, None]
    for index, (row, (pixels, mask, predicted)) in enumerate(zip(axes, examples, strict=True)):
        image = (pixels * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
        shown = [np.where(m == IGNORE_INDEX, len(class_names), m) for m in (mask, predicted)]
        row[0].imshow(image)
        for ax, values in zip(row[1:], shown, strict=True):
            ax.imshow(values, cmap=cmap, vmin=-0.5, vmax=len(class_names) + 0.5, interpolation="nearest")
        for ax, title in zip(row, ("image", "ground truth", "prediction"), strict=True):
            ax.set(xticks=[], yticks=[], title=None if index else title)
    handles = [Patch(color=colours[i], label=name) for i, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="outside right center", fontsize="small", frameon=False)
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def _class_colours(count: int) -> list[tuple[float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [tuple(cmap(i % cmap.N)[:3]) for i in range(count)]


__all__ = [
    "missing_plot_packages",
    "plot_embedding",
    "plot_segmentation_examples",
    "plot_training_curves",
    "split_label",
]
