"""SimCLR self-supervised pretraining for the Hugging Face ecosystem.

Importing this package registers the SimCLR classes with transformers' Auto classes.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .configuration_simclr import SimCLRConfig
from .loss import NTXentLoss
from .modeling_simclr import SimCLRForImageClassification, SimCLRModel, SimCLRModelOutput

AutoConfig.register(SimCLRConfig.model_type, SimCLRConfig, exist_ok=True)
AutoModel.register(SimCLRConfig, SimCLRModel, exist_ok=True)
AutoModelForImageClassification.register(SimCLRConfig, SimCLRForImageClassification, exist_ok=True)

# save_pretrained copies the code and writes auto_map, so folders load with trust_remote_code=True
# where hf_simclr is not installed.
SimCLRConfig.register_for_auto_class()
SimCLRModel.register_for_auto_class("AutoModel")
SimCLRForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = ["NTXentLoss", "SimCLRConfig", "SimCLRForImageClassification", "SimCLRModel", "SimCLRModelOutput"]
__version__ = "0.1.0"
