"""SimCLR self-supervised pretraining for the Hugging Face ecosystem.

Importing this package registers the SimCLR classes with transformers' Auto classes (:mod:`.auto_registration`);
the classes, torch and transformers load on first use (:mod:`.lazy_imports`).
"""

from .auto_registration import register_with_auto_classes
from .lazy_imports import lazy_exports

register_with_auto_classes()

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".configuration_simclr": ["SimCLRConfig"],
        ".loss": ["NTXentLoss"],
        ".modeling_simclr": ["SimCLRBackbone", "SimCLRForImageClassification", "SimCLRModel", "SimCLRModelOutput"],
    },
)
__version__ = "0.1.0"
