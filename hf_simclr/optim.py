"""The optimisation SimCLR's three steps share: LARS with the official code's parameter groups, the batch-size
learning-rate scaling rules and the warm-up + cosine schedule. Pretraining (:mod:`hf_simclr.training`), fine-tuning
(:mod:`hf_simclr.evaluation.finetune`) and distillation (:mod:`hf_simclr.distillation`) build their optimisers here."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from timm.optim import Lars
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_cosine_schedule_with_warmup

LR_SCALINGS = ("linear", "sqrt", "none")


def scaled_learning_rate(base_lr: float, global_batch_size: int, scaling: str) -> float:
    """The paper's rule: `base_lr * B / 256` (linear, base 0.3) or `base_lr * sqrt(B)` (sqrt, base 0.075)."""
    if scaling == "linear":
        return base_lr * global_batch_size / 256
    if scaling == "sqrt":
        return base_lr * math.sqrt(global_batch_size)
    if scaling == "none":
        return base_lr
    raise ValueError(f"lr_scaling must be one of {', '.join(LR_SCALINGS)}, got {scaling!r}")


def lars_param_groups(model: nn.Module, weight_decay: float, not_adapted: Iterable[nn.Parameter] = ()) -> list[dict]:
    """Two groups: weights (decayed and layer-adapted) and biases + normalisation parameters (neither).

    The first group is always layer-adapted, the second never (timm's `always_adapt`), as in the paper.
    ``not_adapted`` moves more parameters to the second group: fine-tuning's classifier, which the official code
    keeps out of weight decay and layer adaptation (its ``exclude_from_weight_decay`` names ``head_supervised``).
    """
    excluded = {id(param) for param in not_adapted}
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            # 1-d parameters are exactly the biases and BatchNorm scales/shifts
            (no_decay if param.ndim <= 1 or id(param) in excluded else decay).append(param)
    # always_adapt: the weights keep layer adaptation even with --weight_decay 0
    return [
        {"params": decay, "weight_decay": weight_decay, "always_adapt": True},
        {"params": no_decay, "weight_decay": 0.0, "always_adapt": False},
    ]


def build_lars(
    model: nn.Module,
    lr: float,
    weight_decay: float = 1e-6,
    momentum: float = 0.9,
    not_adapted: Iterable[nn.Parameter] = (),
) -> Optimizer:
    """LARS (You et al. 2017) with trust coefficient 0.001 and momentum 0.9, as SimCLR trains (see
    :func:`lars_param_groups` for ``not_adapted``)."""
    groups = lars_param_groups(model, weight_decay, not_adapted)
    return Lars(groups, lr=lr, momentum=momentum, trust_coeff=0.001)


def build_schedule(optimizer: Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Linear warm-up, then cosine decay to zero, stepped once per optimizer step."""
    return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)


def hyperparameters(optimizer: Optimizer) -> list[dict[str, Any]]:
    """The settings of each parameter group (learning rate, weight decay, ...), without the parameters."""
    return [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]


def apply_hyperparameters(scheduler: LambdaLR, settings: list[dict[str, Any]]) -> None:
    """Give an optimiser and schedule restored from a checkpoint the ``settings`` of this run (see
    :func:`hyperparameters`): its base learning rate, weight decay, ... and the learning rate they give at the
    restored step. A checkpoint keeps its own otherwise, whatever the flags of the resumed run say."""
    optimizer = scheduler.optimizer
    for group, own in zip(optimizer.param_groups, settings, strict=True):
        group.update(own)
    scheduler.base_lrs = [own["initial_lr"] for own in settings]
    for group, base_lr, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        group["lr"] = base_lr * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
