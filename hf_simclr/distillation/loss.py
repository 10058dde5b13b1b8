"""SimCLRv2's distillation loss (Chen et al. 2020b, eq. 2 and 3).

With the teacher's and the student's class distributions softened by a temperature tau,
P(y | x; tau) = softmax(logits(x) / tau), the student minimises the cross-entropy to the teacher's

    L_distill = - tau^2 * mean_x sum_y P_T(y | x; tau) log P_S(y | x; tau)

over the (unlabelled) images x of the batch, optionally mixed with the usual cross-entropy on the labelled ones:
L = alpha * L_distill + (1 - alpha) * L_label. The factor tau^2 is the official code's
(google-research/simclr@383d414 ``colabs/distillation_self_training.ipynb``, ``add_kd_loss``: the cross-entropy
weighted by ``temperature**2``, as Hinton et al. 2015 do so that the gradients keep their size across temperatures).
The cross-entropy and the KL divergence from the teacher differ by the teacher's entropy, a constant for the student:
their gradients are the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """tau^2 times the cross-entropy from the teacher's softened distribution to the student's, averaged over the
    batch (the official ``add_kd_loss``)."""
    targets = F.softmax(teacher_logits.float() / temperature, dim=1)
    return F.cross_entropy(student_logits.float() / temperature, targets) * temperature**2


def label_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the labelled rows (label >= 0) summed and divided by the whole batch: each labelled image
    weighs in the total as much as in eq. 3's sum over the labelled set, however many a batch holds."""
    labelled = labels >= 0
    if not labelled.any():
        return student_logits.sum() * 0.0  # keeps the graph (and DDP's gradient hooks) whole
    losses = F.cross_entropy(student_logits[labelled].float(), labels[labelled], reduction="sum")
    return losses / len(labels)


def kl_from_teacher(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """KL(P_T || P_S) at ``temperature`` for each image: how far the student is from the teacher (0 when it is the
    teacher)."""
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    student = F.log_softmax(student_logits.float() / temperature, dim=1)
    return (teacher.exp() * (teacher - student)).sum(dim=1)


__all__ = ["distillation_loss", "kl_from_teacher", "label_loss"]
