"""Pretraining: the arguments and presets (:mod:`.arguments`), the loop with its visible :func:`train_step`
(:mod:`.loop`), what a run is built from (:mod:`.components`), LARS and the schedule (:mod:`.optim`), gradient
caching (:mod:`.grad_cache`), verified checkpoints (:mod:`.checkpoint`), the process group (:mod:`.distributed`), the
kNN monitor (:mod:`.monitor`) and the throughput ceiling the loop is measured against (:mod:`.ceiling`)."""

from .arguments import PRESETS, PretrainArguments, parse_args
from .loop import pretrain, train_step

__all__ = ["PRESETS", "PretrainArguments", "parse_args", "pretrain", "train_step"]
