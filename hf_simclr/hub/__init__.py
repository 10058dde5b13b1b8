"""From a trained model to the Hub: the saved folder and the timm export (:mod:`.export`), what a run writes next to
it (:mod:`.records`), the model card (:mod:`.card`) and the upload (:mod:`.push`)."""

from .card import build_model_card, update_model_card
from .export import build_image_processor, export_timm_encoder, save_model
from .push import push_folder_to_hub, push_timm_folder_to_hub, validate_model_folder

__all__ = [
    "build_image_processor",
    "build_model_card",
    "export_timm_encoder",
    "push_folder_to_hub",
    "push_timm_folder_to_hub",
    "save_model",
    "update_model_card",
    "validate_model_folder",
]
