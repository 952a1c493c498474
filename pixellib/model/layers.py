"""Convolution with frozen batch norm, as detectron2's ``layers/wrappers.py`` and
``layers/batch_norm.py`` build it (docs/design.md, "Backbone and FPN").

State-dict names follow detectron2: a conv ``conv1`` owns ``conv1.weight`` and its norm
``conv1.norm.{weight,bias,running_mean,running_var}``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import winograd


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics: ``(x - mean) / sqrt(var + eps) * weight + bias``."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def scale_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The affine map this norm applies, ``y = x * scale + shift``, per channel."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


def derived_weight(owner: nn.Module, slot: str, weight: torch.Tensor, make, *extra) -> torch.Tensor:
    """``make(weight)``, cached in ``owner.<slot>`` and rebuilt when the weight is replaced,
    changed in place (its storage or version counter moves) or ``extra`` differs."""
    key = (weight.data_ptr(), weight._version, tuple(weight.shape), *extra)
    cached = owner.__dict__.get(slot)
    if cached is None or cached[0] != key:
        cached = (key, make(weight))
        owner.__dict__[slot] = cached  # one assignment: threads see old or new, never half
    return cached[1]


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with an optional ``norm`` submodule applied after the convolution, and
    an optional ReLU after that (``relu=True``).

    After the checkpoint is loaded, :meth:`fold_norm` merges a frozen norm into the conv's
    weight and bias (exact up to float rounding), so inference runs one op instead of two.
    Large 3x3 convolutions on the CPU run by Winograd's algorithm (:mod:`.winograd`); the
    transformed filters are cached and rebuilt when the weight changes.
    """

    def __init__(self, *args, norm: nn.Module | None = None, relu: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.relu = relu

    def winograd_weight(self) -> torch.Tensor:
        return derived_weight(self, "_winograd", self.weight, winograd.transform_weight)

    @torch.no_grad()
    def fold_norm(self) -> None:
        if not isinstance(self.norm, FrozenBatchNorm2d):
            return
        scale, shift = self.norm.scale_and_shift()
        self.weight.mul_(scale.view(-1, 1, 1, 1))
        bias = shift if self.bias is None else self.bias * scale + shift
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.norm = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is None and winograd.applies(self, x):
            return winograd.conv3x3(x, self.winograd_weight(), self.bias, relu=self.relu)
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu_(x) if self.relu else x


def fold_frozen_norms(model: nn.Module) -> nn.Module:
    """Fold every ``Conv2d`` + ``FrozenBatchNorm2d`` pair of ``model`` in place."""
    for module in model.modules():
        if isinstance(module, Conv2d):
            module.fold_norm()
    return model
