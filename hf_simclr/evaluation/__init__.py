"""Evaluating a frozen or fine-tuned encoder: features (:mod:`.features`), weighted kNN (:mod:`.knn`), the linear
probe (:mod:`.linear_probe`), and the evaluation scripts: their arguments (:mod:`.arguments`) and logic,
:mod:`.linear_eval` (kNN + linear probe of any backbone), :mod:`.finetune` (SimCLR fine-tuning on a fraction of the
labels) and :mod:`.segmentation` (UperNet on the SimCLR encoder, mean IoU), with their plots (:mod:`.plots`)."""

from ..lazy_imports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".features": ["ImageProcessorCollate", "default_image_processor", "extract_features", "pooled_features"],
        ".knn": ["KNN_KS", "KNN_TEMPERATURE", "knn_accuracy", "knn_classify"],
        ".linear_probe": ["class_balanced_split", "linear_probe"],
    },
)
