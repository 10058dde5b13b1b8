"""From a trained model to the Hub: the saved folder and the timm export (:mod:`.export`), what a run writes next to
it (:mod:`.records`), the model card (:mod:`.card`), the upload (:mod:`.push`) and the ONNX export for deployment
(:mod:`.onnx_export`)."""

from ..lazy_imports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".card": ["build_model_card", "update_model_card"],
        ".export": ["build_image_processor", "export_timm_encoder", "save_model"],
        ".onnx_export": ["export_onnx"],
        ".push": ["push_folder_to_hub", "push_timm_folder_to_hub", "validate_model_folder"],
    },
)
