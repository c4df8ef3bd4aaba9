"""The guidance mathematics: pure functions over logits, confidences and weights, shared by every model."""

from softcfg.guidance.cfg import cfg_combine, sample_tokens, sampling_logits, top_k_filter, top_p_filter
from softcfg.guidance.confidence import CONFIDENCES, StepLogits
from softcfg.guidance.entropy import normalized_entropy
from softcfg.guidance.schedules import (
    SCHEDULES,
    constant_schedule,
    cosine_power_schedule,
    linear_schedule,
    schedule_scales,
    var_scale_ramp,
)
from softcfg.guidance.weights import TARGETS, step_normalized_weights, unnormalized_weights

__all__ = [
    "CONFIDENCES",
    "SCHEDULES",
    "TARGETS",
    "StepLogits",
    "cfg_combine",
    "constant_schedule",
    "cosine_power_schedule",
    "linear_schedule",
    "normalized_entropy",
    "sample_tokens",
    "sampling_logits",
    "schedule_scales",
    "step_normalized_weights",
    "top_k_filter",
    "top_p_filter",
    "unnormalized_weights",
    "var_scale_ramp",
]
