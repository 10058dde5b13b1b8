"""Pretraining: the arguments and presets (:mod:`.arguments`), the loop with its visible :func:`train_step`
(:mod:`.loop`), what a run is built from (:mod:`.components`), gradient
caching (:mod:`.grad_cache`), verified checkpoints of safetensors and JSON (:mod:`.checkpoint`), what defines a run
and may not change on resume (:mod:`.run_identity`), the process group (:mod:`.distributed`), the kNN monitor
(:mod:`.monitor`), what a run tells its user and how it stops on Ctrl-C or a scheduler's signal (:mod:`.console`),
the command that starts it again (:mod:`.relaunch`) and the throughput ceiling the loop is measured against
(:mod:`.ceiling`)."""

from ..lazy_imports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".arguments": ["PRESETS", "PretrainArguments", "parse_args"],
        ".loop": ["pretrain", "train_step"],
    },
)
