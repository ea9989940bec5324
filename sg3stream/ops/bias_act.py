"""bias_act: add a bias, apply an activation, scale, clamp (reference torch implementation).

Same signature and semantics as the official custom op `torch_utils.ops.bias_act.bias_act`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Activation:
    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, alpha: x, 0.0, 1.0),
    "relu": Activation(lambda x, alpha: F.relu(x), 0.0, float(np.sqrt(2))),
    "lrelu": Activation(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, float(np.sqrt(2))),
    "tanh": Activation(lambda x, alpha: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, alpha: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, alpha: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, alpha: F.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, alpha: F.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, alpha: torch.sigmoid(x) * x, 0.0, float(np.sqrt(2))),
}


def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    """x + b (broadcast along `dim`), then act(alpha), times gain, clamped to [-clamp, clamp].

    alpha/gain None mean the activation's defaults (lrelu: 0.2 and sqrt(2)); clamp None or < 0 disables clamping.
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; accepted: {', '.join(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)

    if b is not None:
        shape = [-1 if i == dim else 1 for i in range(x.ndim)]
        x = x + b.to(x.dtype).reshape(shape)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
