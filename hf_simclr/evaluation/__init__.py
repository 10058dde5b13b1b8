"""Evaluating a frozen or fine-tuned encoder: features (:mod:`.features`), weighted kNN (:mod:`.knn`), the linear
probe (:mod:`.linear_probe`), and the two evaluation scripts' logic: :mod:`.linear_eval` (kNN + linear probe of any
backbone) and :mod:`.finetune` (SimCLR fine-tuning on a fraction of the labels), with their plots (:mod:`.plots`)."""

from .features import ImageProcessorCollate, default_image_processor, extract_features, pooled_features
from .knn import KNN_KS, KNN_TEMPERATURE, knn_accuracy, knn_classify
from .linear_probe import class_balanced_split, linear_probe

__all__ = [
    "KNN_KS",
    "KNN_TEMPERATURE",
    "ImageProcessorCollate",
    "class_balanced_split",
    "default_image_processor",
    "extract_features",
    "knn_accuracy",
    "knn_classify",
    "linear_probe",
    "pooled_features",
]
