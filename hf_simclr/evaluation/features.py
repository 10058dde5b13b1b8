"""Evaluating a frozen encoder: feature extraction, weighted kNN (the pretraining monitor) and the linear probe.

* :func:`extract_features` runs any image backbone with a pooled output (``SimCLRModel``, transformers'
  ``ResNetModel``, a timm export loaded as ``TimmWrapperModel``, a plain timm/torch module) over a dataset or a
  DataLoader, in eval mode and without gradients.
* :func:`knn_classify` / :func:`knn_accuracy`: the weighted cosine kNN of InstDisc (Wu et al., 2018) as in lightly's
  ``knn_predict``: the k most similar training features vote for their class with weight ``exp(sim / T)``.
* :func:`linear_probe`: SimCLR's linear evaluation protocol on precomputed features: a linear classifier on
  standardised features, learning rate and weight decay chosen on a validation split, retrained on train + val.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import datasets
import torch
from torch import nn
from tqdm.auto import tqdm

from .augment import IMAGENET_MEAN, IMAGENET_STD
from .decode import decode_image

logger = logging.getLogger(__name__)

KNN_KS = (20, 200)
KNN_TEMPERATURE = 0.07


# ------------------------------------------------------------------------------------------------------------ data


class ImageProcessorCollate:
    """DataLoader ``collate_fn`` for dataset rows: decode to RGB, apply a transformers image processor.

    Unreadable images are dropped with a warning rather than stopping an evaluation of thousands of images.
    """

    def __init__(self, image_processor: Any, image_column: str = "image", label_column: str | None = "label"):
        self.image_processor = image_processor
        self.image_column = image_column
        self.label_column = label_column

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        images, labels = [], []
        for row in rows:
            try:
                images.append(decode_image(row[self.image_column]))
            except Exception as error:
                logger.warning("skipping an unreadable image (%s: %s)", type(error).__name__, error)
                continue
            labels.append(int(row[self.label_column]) if self.label_column in row else -1)
        if not images:
            return {"pixel_values": torch.zeros(0, 3, 1, 1), "labels": torch.zeros(0, dtype=torch.long)}
        pixel_values = self.image_processor(images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": torch.as_tensor(pixel_values), "labels": torch.tensor(labels, dtype=torch.long)}


def default_image_processor(model: nn.Module) -> Any:
    """The evaluation preprocessing of a SimCLR model (resize, centre crop, normalise) from its config."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "simclr":
        raise ValueError(
            "this model has no SimCLR config to derive its preprocessing from: pass image_processor "
            "(e.g. AutoImageProcessor.from_pretrained(model_id))"
        )
    from .export import build_image_processor

    return build_image_processor(config)


# ------------------------------------------------------------------------------------------------------- features


def pooled_features(outputs: Any) -> torch.Tensor:
    """(B, D) representation from a model's outputs: ``pooler_output`` flattened (ResNetModel gives (B, C, 1, 1)),
    else the global average of a (B, C, H, W) map or the first token of a (B, T, D) sequence."""
    if isinstance(outputs, torch.Tensor):
        return outputs.flatten(1)
    get = outputs.get if hasattr(outputs, "get") else lambda key, default=None: default
    pooled = get("pooler_output")
    if pooled is not None:
        return pooled.flatten(1)
    hidden = get("last_hidden_state")
    if hidden is None and isinstance(outputs, (tuple, list)) and outputs:
        hidden = outputs[0]
    if isinstance(hidden, torch.Tensor) and hidden.ndim == 4:
        return hidden.mean(dim=(2, 3))
    if isinstance(hidden, torch.Tensor) and hidden.ndim == 3:
        return hidden[:, 0]
    raise ValueError("the model returned no pooler_output nor a (B, C, H, W) / (B, T, D) last_hidden_state")


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, dict):
        labels = batch.get("labels", batch.get("label"))
        return batch["pixel_values"], None if labels is None else torch.as_tensor(labels)
    if isinstance(batch, (tuple, list)):
        return batch[0], torch.as_tensor(batch[1]) if len(batch) > 1 else None
    return batch, None


def _normalizer(model: nn.Module, image_processor: Any) -> tuple[Sequence[float], Sequence[float]]:
    source = image_processor if image_processor is not None else getattr(model, "config", None)
    mean = getattr(source, "image_mean", None) or IMAGENET_MEAN
    std = getattr(source, "image_std", None) or IMAGENET_STD
    return mean, std


@torch.no_grad()
def extract_features(
    model: nn.Module,
    data: datasets.Dataset | Iterable,
    *,
    image_processor: Any = None,
    image_column: str = "image",
    label_column: str = "label",
    batch_size: int = 256,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
    desc: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode every image of ``data`` with the frozen ``model``; return float32 ``(features (N, D), labels (N,))``
    on the CPU (labels are -1 where the data has none).

    Args:
        model: called as ``model(pixel_values)``; see :func:`pooled_features` for the outputs it accepts. It runs
            in eval mode (BatchNorm statistics fixed) and is put back in its previous mode afterwards, so a trainer
            can call this mid-training.
        data: a ``datasets.Dataset`` with ``image_column`` / ``label_column`` (preprocessed by ``image_processor``),
            or any iterable of batches: dicts with ``pixel_values`` and ``labels`` (e.g. a DataLoader over
            :class:`hf_simclr.augment.EvalTransform` + ``collate_views``) or ``(images, labels)`` pairs.
        image_processor: a transformers image processor; defaults to the SimCLR config's evaluation preprocessing.
            For uint8 batches its ``image_mean`` / ``image_std`` (else the model config's, else ImageNet's)
            normalise the images on ``device``, unless ``preprocess`` is given.
        preprocess: applied to each batch's pixel values on ``device`` instead of the default uint8 normalisation.
        device: where the model runs; defaults to the device of its parameters (the model is moved if needed).
        autocast_dtype: e.g. ``torch.bfloat16`` to encode under autocast on an accelerator.
    """
    params = next(model.parameters(), None)
    device = torch.device(device) if device is not None else (params.device if params is not None else "cpu")
    model.to(device)
    dtype = params.dtype if params is not None and params.is_floating_point() else torch.float32
    if isinstance(data, datasets.Dataset):
        missing = [c for c in (image_column, label_column) if c not in data.column_names]
        if missing:
            raise ValueError(
                f"column(s) {missing} not in the dataset (columns: {data.column_names}): pass image_column= and "
                "label_column= (--image_column / --label_column)"
            )
        image_processor = image_processor if image_processor is not None else default_image_processor(model)
        data = torch.utils.data.DataLoader(
            data.select_columns([image_column, label_column]),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=ImageProcessorCollate(image_processor, image_column, label_column),
        )
    mean, std = _normalizer(model, image_processor)
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)

    was_training = model.training
    model.eval()
    features, labels = [], []
    try:
        for batch in tqdm(data, desc=desc, disable=not progress, unit="batch"):
            pixel_values, batch_labels = _split_batch(batch)
            if pixel_values.shape[0] == 0:
                continue
            pixel_values = pixel_values.to(device, non_blocking=True)
            if preprocess is not None:
                pixel_values = preprocess(pixel_values)
            elif pixel_values.dtype == torch.uint8:
                pixel_values = (pixel_values.float() / 255.0 - mean_t) / std_t
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                outputs = model(pixel_values.to(dtype))  # positional: plain torch modules too
            features.append(pooled_features(outputs).float().cpu())
            n = features[-1].shape[0]
            labels.append(batch_labels.long().cpu() if batch_labels is not None else torch.full((n,), -1))
    finally:
        model.train(was_training)
    if not features:
        raise ValueError("no images could be encoded: the dataset is empty or none of its images could be read")
    return torch.cat(features), torch.cat(labels)


# ------------------------------------------------------------------------------------------------------------ kNN


def _knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    ks: Sequence[int],
    temperature: float,
    num_classes: int,
    chunk_size: int,
) -> dict[int, torch.Tensor]:
    """Class scores (N_test, C) for each k; one top-k search at the largest k serves every smaller k."""
    if train_features.shape[0] == 0:
        raise ValueError("kNN needs at least one training feature")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"feature sizes differ: train {train_features.shape[1]}, test {test_features.shape[1]}")
    device = train_features.device
    bank = nn.functional.normalize(train_features, dim=1)
    bank_labels = train_labels.to(device).long()
    max_k = min(max(ks), bank.shape[0])
    scores = {k: [] for k in ks}
    for start in range(0, test_features.shape[0], chunk_size):
        # chunks bound memory to chunk_size x N_train similarities (ImageNet: 1.28M train features)
        query = nn.functional.normalize(test_features[start : start + chunk_size].to(device, bank.dtype), dim=1)
        sims, idx = (query @ bank.T).topk(max_k, dim=1)
        weights = (sims / temperature).exp()
        neighbour_labels = bank_labels[idx]
        for k in ks:
            kk = min(k, max_k)
            chunk = torch.zeros(query.shape[0], num_classes, device=device, dtype=weights.dtype)
            scores[k].append(chunk.scatter_add_(1, neighbour_labels[:, :kk], weights[:, :kk]).cpu())
    return {k: torch.cat(v) for k, v in scores.items()}


def knn_classify(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    k: int = 200,
    temperature: float = KNN_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted cosine kNN: ``(predictions (N_test,), class scores (N_test, C))``.

    The score of class c for a test feature x is ``sum_{i in topk(x), y_i = c} exp(cos(x, x_i) / temperature)``
    over the k training features most cosine-similar to x (all of them if there are fewer than k). Runs on the
    device of ``train_features``; scores are returned on the CPU.
    """
    num_classes = num_classes or int(train_labels.max()) + 1
    scores = _knn_scores(train_features, train_labels, test_features, [k], temperature, num_classes, chunk_size)[k]
    return scores.argmax(dim=1), scores


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Sequence[int] = KNN_KS,
    temperature: float = KNN_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int = 1024,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Top-1 accuracy (a fraction in [0, 1]) of :func:`knn_classify` for each k: ``{"knn_top1_k20": ...,
    "knn_top1_k200": ...}``. ``device`` (default: that of ``train_features``) is where the similarities are computed.
    """
    if device is not None:
        train_features = train_features.to(device)
    test_labels = test_labels.cpu().long()
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    scores = _knn_scores(train_features, train_labels, test_features, ks, temperature, num_classes, chunk_size)
    return {f"knn_top1_k{k}": (s.argmax(dim=1) == test_labels).float().mean().item() for k, s in scores.items()}


# --------------------------------------------------------------------------------------------------- linear probe


def class_balanced_split(labels: torch.Tensor, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(kept, rest)``: ``fraction`` of each class (at least one example each), drawn with ``seed``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for cls in labels.unique():
        members = (labels == cls).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        kept.append(members[: max(1, round(fraction * len(members)))])
    kept_idx = torch.cat(kept).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[kept_idx] = False
    return kept_idx, mask.nonzero().flatten()


def _topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).float().mean().item()


def _softmax_regression(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, lrs: torch.Tensor, weight_decays: torch.Tensor, epochs: int,
    batch_size: int, seed: int, progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Train G linear classifiers at once (one per (lr, weight decay) pair) with Nesterov SGD, momentum 0.9 and a
    cosine schedule on the same minibatches; returns weights (G, D, C) and biases (G, C).

    The G classifiers are side by side in one (D, G * C) matrix and the cross-entropy gradient is written out,
    ``x.T @ (softmax - onehot) / B``: two plain matmuls a step for the whole sweep, no autograd.
    """
    num_configs, dim = len(lrs), x.shape[1]
    # the problem is convex: zero initialisation is as good as any and makes the sweep deterministic
    weight = torch.zeros(dim, num_configs, num_classes, device=x.device)
    bias = torch.zeros(num_configs, num_classes, device=x.device)
    weight_buf, bias_buf = torch.zeros_like(weight), torch.zeros_like(bias)
    lrs, weight_decays = lrs.to(x.device).view(-1, 1), weight_decays.to(x.device).view(-1, 1)
    onehot = nn.functional.one_hot(y, num_classes).float().unsqueeze(1)
    generator = torch.Generator().manual_seed(seed)
    total_steps, step = epochs * math.ceil(len(x) / batch_size), 0
    for _ in tqdm(range(epochs), desc="linear probe", unit="epoch", disable=not progress):
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            xb = x[idx]
            logits = (xb @ weight.view(dim, -1)).view(len(idx), num_configs, num_classes) + bias
            residual = (logits.softmax(-1) - onehot[idx]) / len(idx)
            lr = lrs * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            for param, buf, grad in (
                (weight, weight_buf, (xb.T @ residual.view(len(idx), -1)).view_as(weight) + weight_decays * weight),
                (bias, bias_buf, residual.sum(0)),  # no weight decay on the bias
            ):
                buf.mul_(0.9).add_(grad)
                param.sub_(lr * (grad + 0.9 * buf))
            step += 1
    return weight.permute(1, 0, 2), bias


def _logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, chunk_size: int = 8192) -> torch.Tensor:
    return torch.cat([torch.addmm(bias, x[i : i + chunk_size], weight) for i in range(0, len(x), chunk_size)])


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    test_features: torch.Tensor | None = None,
    test_labels: torch.Tensor | None = None,
    *,
    lrs: Sequence[float] = (0.3, 0.1, 0.03),
    weight_decays: Sequence[float] = (0.0, 1e-4, 1e-3),
    epochs: int = 100,
    batch_size: int = 256,
    val_fraction: float = 0.1,
    num_classes: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Linear evaluation of frozen features: sweep ``lrs`` x ``weight_decays`` on the validation split, retrain the
    best on train + val, report top-1 / top-5 (fractions in [0, 1]) on the test split.

    Without ``val_features`` a class-balanced ``val_fraction`` of the training features is held out (seeded).
    Returns ``{"linear_top1", "linear_top5", "val_top1", "best_lr", "best_weight_decay", "sweep": [...]}``
    (the ``linear_*`` keys only with test data). Features are standardised with the training statistics.
    """
    device = torch.device(device) if device is not None else train_features.device
    train_features, train_labels = train_features.float().to(device), train_labels.long().to(device)
    if val_features is None:
        val_idx, train_idx = class_balanced_split(train_labels.cpu(), val_fraction, seed)
        if len(train_idx) == 0:
            raise ValueError("too few training features to hold out a validation split; pass val_features")
        val_features, val_labels = train_features[val_idx], train_labels[val_idx]
        train_features, train_labels = train_features[train_idx], train_labels[train_idx]
    val_features, val_labels = val_features.float().to(device), val_labels.long().to(device)
    all_labels = [train_labels, val_labels] + ([test_labels.long().to(device)] if test_labels is not None else [])
    num_classes = num_classes or int(max(t.max() for t in all_labels)) + 1

    mean, std = train_features.mean(0), train_features.std(0).clamp_min(1e-6)
    grid = [(lr, wd) for lr in lrs for wd in weight_decays]
    weights, biases = _softmax_regression(
        (train_features - mean) / std, train_labels, num_classes, torch.tensor([g[0] for g in grid]),
        torch.tensor([g[1] for g in grid]), epochs, batch_size, seed, progress,
    )  # fmt: skip
    val_x = (val_features - mean) / std
    sweep = [
        {"lr": lr, "weight_decay": wd, "val_top1": _topk_accuracy(_logits(val_x, weights[i], biases[i]), val_labels, 1)}
        for i, (lr, wd) in enumerate(grid)
    ]
    best = max(sweep, key=lambda row: row["val_top1"])  # first of equals: the order of lrs / weight_decays breaks ties
    results: dict[str, Any] = {
        "val_top1": best["val_top1"],
        "best_lr": best["lr"],
        "best_weight_decay": best["weight_decay"],
        "sweep": sweep,
    }
    if test_features is not None and test_labels is not None:
        features = torch.cat([train_features, val_features])
        mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
        weight, bias = _softmax_regression(
            (features - mean) / std, torch.cat([train_labels, val_labels]), num_classes,
            torch.tensor([best["lr"]]), torch.tensor([best["weight_decay"]]), epochs, batch_size, seed, progress,
        )  # fmt: skip
        logits = _logits((test_features.float().to(device) - mean) / std, weight[0], bias[0])
        test_labels = test_labels.long().to(device)
        results["linear_top1"] = _topk_accuracy(logits, test_labels, 1)
        results["linear_top5"] = _topk_accuracy(logits, test_labels, 5)
    return results


__all__ = [
    "ImageProcessorCollate",
    "KNN_KS",
    "KNN_TEMPERATURE",
    "class_balanced_split",
    "extract_features",
    "knn_accuracy",
    "knn_classify",
    "linear_probe",
    "pooled_features",
]
