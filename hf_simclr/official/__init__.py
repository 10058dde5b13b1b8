"""The checkpoints released with the SimCLR papers, converted exactly into hf_simclr models.

- `tf_checkpoint`: reads TensorFlow checkpoints (tensor bundles) without TensorFlow, checking every CRC-32C.
- `tf_mapping` / `pytorch_copies`: which tensor becomes which weight, for the TensorFlow checkpoints and for the
  lightly-ai PyTorch copies; `architecture`: the network they describe and the SimCLRConfig that rebuilds it.
- `convert`: writes the model folder; `variants`: the releases and their published top-1; `card`: the model card.
- `preprocessing` / `imagenet`: the official evaluation preprocessing and ImageNet top-1 of a converted model.

Command lines: `scripts/convert_official_checkpoint.py`, `scripts/evaluate_imagenet.py`.
"""

from ..errors import CheckpointError
from ..lazy_imports import lazy_exports

__getattr__, __dir__, _exports = lazy_exports(
    __name__,
    {".convert": ["ConversionResult", "convert_official_checkpoint"], ".tf_checkpoint": ["TFCheckpoint"]},
)
__all__ = ["CheckpointError", *_exports]
