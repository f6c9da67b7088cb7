"""Training losses: label-smoothed cross-entropy and Hinton knowledge distillation."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, scaled by T^2 so its gradient
    magnitude does not shrink as T grows (Hinton et al., 2015)."""
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature ** 2


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float,
                        teacher_logits: torch.Tensor | None = None, alpha: float = 0.5,
                        temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy on the labels, mixed (1 - alpha) : alpha with distillation when a teacher's
    logits are given."""
    ce = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    if teacher_logits is None:
        return ce
    return (1 - alpha) * ce + alpha * distillation_loss(logits, teacher_logits, temperature)
