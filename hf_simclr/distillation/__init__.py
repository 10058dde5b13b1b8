"""Distillation, SimCLRv2's third step: a fine-tuned teacher's softened class distribution taught to a student (the
same network or a smaller one) on unlabelled images. The arguments (:mod:`.arguments`), the loss (:mod:`.loss`), the
teacher and the student (:mod:`.models`), the images (:mod:`.training_data`) and their two views (:mod:`.data`), the
comparison with the teacher on held-out images (:mod:`.evaluate`), the loop (:mod:`.loop`) and the student's model
card (:mod:`.card`)."""

from ..lazy_imports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".arguments": ["DistillArguments", "parse_distill_args"],
        ".loop": ["distill"],
        ".loss": ["distillation_loss", "kl_from_teacher", "label_loss"],
    },
)
