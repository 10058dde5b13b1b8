"""ImageNet top-1 / top-5 of a model's classifier on a validation folder, with the official evaluation preprocessing.

The folder holds one sub-folder per class named by WordNet id (`n01440764/…JPEG`, the layout torchvision's
`ImageFolder` reads). Class k is the k-th WordNet id in sorted order, as TFDS `imagenet2012` numbers them and the
official classifiers predict. A folder with only some of the classes is evaluated on those images, still over the
1000 outputs. Images are decoded with PIL, whose JPEG decoder may differ from TensorFlow's by a grey level here and
there; everything after decoding is the official computation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..errors import UsageError
from .preprocessing import official_eval_tensor

__all__ = ["ImageNetResult", "ImageNetValidationFolder", "evaluate_imagenet", "imagenet_synsets"]

NUM_CLASSES = 1000
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".webp", ".bmp")


def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids, sorted: index = class id."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_label_name(index) for index in range(NUM_CLASSES)]


class ImageNetValidationFolder(Dataset):
    """(official eval tensor, class id) for every image under `root/<wnid>/`."""

    def __init__(self, root: str | Path, image_size: int = 224) -> None:
        root = Path(root)
        if not root.is_dir():
            raise UsageError(f"{root} is not a folder: pass the ImageNet validation folder (a folder per class)")
        index = {synset: i for i, synset in enumerate(imagenet_synsets())}
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        unknown = [p.name for p in folders if p.name not in index]
        if unknown or not folders:
            found = f"{unknown[0]!r} is not an ImageNet-1k WordNet id" if unknown else "it has no class folders"
            raise UsageError(f"{root} is not an ImageNet validation folder: {found} (expected e.g. n01440764/)")
        self.samples = [
            (path, index[folder.name])
            for folder in folders
            for path in sorted(folder.iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not self.samples:
            raise UsageError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[item]
        try:
            with Image.open(path) as image:
                return official_eval_tensor(image, self.image_size), label
        except (UnidentifiedImageError, OSError) as err:
            raise UsageError(f"{path} is not a readable image ({err}): remove or replace it") from None


@dataclass
class ImageNetResult:
    top1: float  # percent
    top5: float
    images: int
    preprocessing: str = "official: centre crop 87.5%, TF1 bicubic resize to 224, [0, 1], no mean/std"


@torch.no_grad()
def evaluate_imagenet(
    model: torch.nn.Module,
    folder: str | Path,
    *,
    batch_size: int = 64,
    num_workers: int = 4,
    device: str | torch.device | None = None,
    limit: int | None = None,
) -> ImageNetResult:
    """Top-1 / top-5 accuracy (%) of `model`'s logits (1000 ImageNet classes) on the images under `folder`."""
    outputs = getattr(getattr(model, "config", None), "num_labels", NUM_CLASSES)
    if outputs != NUM_CLASSES:
        raise UsageError(f"the model's classifier has {outputs} outputs, not the {NUM_CLASSES} ImageNet classes")
    dataset = ImageNetValidationFolder(folder, image_size=getattr(model.config, "image_size", 224))
    if limit is not None:
        dataset.samples = dataset.samples[:limit]
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    correct1 = correct5 = seen = 0
    for pixels, labels in tqdm(loader, desc="ImageNet validation", unit="batch"):
        logits = model(pixel_values=pixels.to(device, non_blocking=True)).logits.float().cpu()
        top5 = logits.topk(5, dim=1).indices
        correct1 += (top5[:, 0] == labels).sum().item()
        correct5 += (top5 == labels[:, None]).any(dim=1).sum().item()
        seen += labels.shape[0]
    return ImageNetResult(top1=100 * correct1 / seen, top5=100 * correct5 / seen, images=seen)


def write_result(result: ImageNetResult, path: str | Path) -> None:
    Path(path).write_text(json.dumps(asdict(result), indent=2) + "\n")
