"""An image encoder as a function from images to unit-length embeddings: the model's pooled output h (what
``pipeline("image-feature-extraction")(image, pool=True)`` returns), L2-normalised so that an inner product is the
cosine similarity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..data.decode import decode_image
from ..evaluation.features import pooled_features
from .preprocess import Preprocessing, preprocessing_for


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


class ImageEmbedder:
    """``model`` in eval mode on ``device`` with its image ``processor``.

    Dataset rows are decoded by :attr:`preprocessing` (the fast path equal to the processor, in DataLoader workers)
    and encoded by :meth:`embed_pixels`; query images go through the processor itself (:meth:`embed_images`), as in
    the feature-extraction pipeline. ``bf16`` encodes under bfloat16 autocast (default: on a GPU).
    """

    def __init__(
        self, model: nn.Module, processor: Any, device: torch.device | str | None = None, bf16: bool | None = None
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.eval().to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.processor = processor
        self.preprocessing: Preprocessing = preprocessing_for(processor)
        self.bf16 = self.device.type == "cuda" if bf16 is None else bf16

    @classmethod
    def from_pretrained(
        cls, model_id: str, device: torch.device | str | None = None, bf16: bool | None = None
    ) -> ImageEmbedder:
        """Any ``AutoModel`` image backbone (a folder or Hub id) with its image processor; a SimCLR folder without
        one gets its evaluation preprocessing (:func:`hf_simclr.evaluation.linear_eval.load_encoder`)."""
        from ..evaluation.linear_eval import load_encoder

        model, processor = load_encoder(model_id)
        return cls(model, processor, device=device, bf16=bf16)

    @torch.inference_mode()
    def embed_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unit-length float32 embeddings ``(B, D)`` on the CPU of a batch from :attr:`preprocessing`."""
        pixel_values = pixel_values.to(self.device, non_blocking=True)
        pixel_values = self.preprocessing.normalize(pixel_values)
        if self.device.type == "cuda":
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            features = pooled_features(self.model(pixel_values=pixel_values)).float()
        return nn.functional.normalize(features, dim=1).cpu()

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Any]) -> torch.Tensor:
        """Unit-length float32 embeddings ``(N, D)`` of images (PIL images, paths, bytes) through the image processor:
        the feature-extraction pipeline's preprocessing."""
        decoded = [decode_image(image) for image in images]
        pixel_values = torch.as_tensor(self.processor(decoded, return_tensors="pt")["pixel_values"])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            features = pooled_features(self.model(pixel_values=pixel_values.to(self.device))).float()
        return nn.functional.normalize(features, dim=1).cpu()


__all__ = ["ImageEmbedder", "default_device"]
