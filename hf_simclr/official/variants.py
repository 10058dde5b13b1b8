"""The released SimCLR checkpoints: where each one is, how its name reads, and the top-1 its authors published.

Every number here is copied from google-research/simclr's README (ImageNet top-1, %); none was measured by
hf_simclr. `scripts/evaluate_imagenet.py` measures a converted checkpoint on an ImageNet validation folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Variant", "V2_TABLE", "recognise_variant"]

V1_TOP1 = {1: 69.1, 2: 74.2, 4: 76.6}  # README "Pre-trained models for SimCLRv1": linear classifier on h
V1_ZIP = "https://storage.cloud.google.com/simclr-gcs/checkpoints/ResNet50_{width}x.zip"
V2_LOCATION = "gs://simclr-checkpoints/simclrv2/{category}/r{depth}_{width}x_sk{sk}"
V1_LOCATION = "gs://simclr-checkpoints/simclrv1/{category}/{width}x"
# README "Pre-trained models for SimCLRv2" (Table 1 of the SimCLRv2 paper):
# (depth, width, sk) -> fine-tuned on 1%, 10%, 100% of the labels, linear evaluation, supervised
V2_TABLE = {
    (50, 1, 0): (57.9, 68.4, 76.3, 71.7, 76.6),
    (50, 1, 1): (64.5, 72.1, 78.7, 74.6, 78.5),
    (50, 2, 0): (66.3, 73.9, 79.1, 75.6, 77.8),
    (50, 2, 1): (70.6, 77.0, 81.3, 77.7, 79.3),
    (101, 1, 0): (62.1, 71.4, 78.2, 73.6, 78.0),
    (101, 1, 1): (68.3, 75.1, 80.6, 76.3, 79.6),
    (101, 2, 0): (69.1, 75.8, 80.7, 77.0, 78.9),
    (101, 2, 1): (73.2, 78.8, 82.4, 79.0, 80.1),
    (152, 1, 0): (64.0, 73.0, 79.3, 74.5, 78.3),
    (152, 1, 1): (70.0, 76.5, 81.3, 77.2, 79.9),
    (152, 2, 0): (70.2, 76.6, 81.1, 77.4, 79.1),
    (152, 2, 1): (74.2, 79.4, 82.9, 79.4, 80.4),
    (152, 3, 1): (74.9, 80.1, 83.1, 79.8, 80.5),
}
V2_COLUMNS = {
    "finetuned_1pct": (0, "fine-tuned on 1% of the labels"),
    "finetuned_10pct": (1, "fine-tuned on 10% of the labels"),
    "finetuned_100pct": (2, "fine-tuned on 100% of the labels"),
    "pretrained": (3, "linear evaluation"),
    "supervised": (4, "supervised training of the same architecture"),
}
_V2_CATEGORIES = "pretrained|finetuned_1pct|finetuned_10pct|finetuned_100pct|supervised|distill_1pct|distill_10pct"
_V2_NAME = re.compile(rf"(?:({_V2_CATEGORIES})[/\\-])?r(50|101|152)_([123])x_sk([01])")
_V1_NAME = re.compile(r"(?:(pretrain|finetune_10pct|finetune_100pct)[/\\]([124])x|resnet[-_]?50[-_ ]\(?([124])x)", re.I)


@dataclass(frozen=True)
class Variant:
    """One released checkpoint, as its name tells.

    Args:
        generation: "SimCLRv1" or "SimCLRv2".
        category: the release folder (v2: "pretrained", "finetuned_1pct", ...; v1: "pretrain", "finetune_10pct",
            "finetune_100pct"), or None when the name does not tell (v1 zips and the lightly-ai copies).
        depth, width, sk: the network, e.g. 50, 1, 0 for r50_1x_sk0.
    """

    generation: str
    category: str | None
    depth: int
    width: int
    sk: int = 0

    @property
    def name(self) -> str:
        if self.generation == "SimCLRv1":
            return f"SimCLRv1 ResNet-50 ({self.width}x)" + (f", {self.category}" if self.category else "")
        return f"SimCLRv2 r{self.depth}_{self.width}x_sk{self.sk}" + (f", {self.category}" if self.category else "")

    @property
    def location(self) -> str:
        """Where the official TensorFlow checkpoint is published."""
        if self.generation == "SimCLRv1":
            return V1_ZIP.format(width=self.width) if self.category is None else V1_LOCATION.format(**vars(self))
        return V2_LOCATION.format(**{**vars(self), "category": self.category or "pretrained"})

    @property
    def classifier_projection_layers(self) -> int:
        """SimCLRv2 fine-tunes on 1% and 10% of the labels from the first head layer (run.py ft_proj_selector=1)."""
        return 1 if self.category in ("finetuned_1pct", "finetuned_10pct") else 0

    @property
    def published_top1(self) -> tuple[float, str] | None:
        """The README's ImageNet top-1 for this checkpoint's classifier and what it measures, if published."""
        if self.generation == "SimCLRv1":
            if self.category in (None, "pretrain"):
                return V1_TOP1[self.width], "linear evaluation"
            return None
        row = V2_TABLE.get((self.depth, self.width, self.sk))
        column = V2_COLUMNS.get(self.category or "pretrained")
        if row is None or column is None:
            return None
        return row[column[0]], column[1]


def recognise_variant(source: str) -> Variant | None:
    """The released checkpoint that `source` (a path, URL or Hub repo id) names, or None."""
    text = source.replace("\\", "/")
    if "simclrv1" in text.lower() or _V1_NAME.search(text) and not _V2_NAME.search(text):
        match = _V1_NAME.search(text)
        if match:
            return Variant("SimCLRv1", match.group(1), 50, int(match.group(2) or match.group(3)))
        return None
    matches = list(_V2_NAME.finditer(text))
    if not matches:
        return None
    match = matches[-1]  # the last mention wins: the file name over a parent folder
    category, depth, width, sk = match.groups()
    if category is None:  # gs layout: .../<category>/r50_1x_sk0/model.ckpt-N
        found = re.search(rf"({_V2_CATEGORIES})/[^/]*r{depth}_{width}x_sk{sk}", text)
        category = found.group(1) if found else None
    return Variant("SimCLRv2", category, int(depth), int(width), int(sk))
