"""ResNet / ResNeXt bottom-up network and FPN, as detectron2's ``modeling/backbone/resnet.py``
and ``fpn.py`` build them for PointRend (docs/design.md, "Backbone and FPN"; He et al.
2016, Xie et al. 2017,
Lin et al. 2017 "Feature Pyramid Networks").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import cancel
from .layers import Conv2d, FrozenBatchNorm2d
from .ops import add_relu


class BasicStem(nn.Module):
    """7x7/2 conv + FrozenBN + ReLU, then 3x3/2 max-pool: output stride 4."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64):
        super().__init__()
        self.conv1 = Conv2d(
            in_channels, out_channels, 7, stride=2, padding=3, bias=False,
            norm=FrozenBatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (grouped) -> 1x1 residual block; the shortcut is projected when the
    channel count changes. ``stride_in_1x1`` puts the stride on conv1 (MSRA weights) instead
    of conv2 (FAIR weights)."""

    def __init__(
        self, in_channels: int, out_channels: int, *, bottleneck_channels: int, stride: int,
        num_groups: int, stride_in_1x1: bool,
    ):
        super().__init__()
        if in_channels != out_channels:
            self.shortcut = Conv2d(
                in_channels, out_channels, 1, stride=stride, bias=False,
                norm=FrozenBatchNorm2d(out_channels),
            )
        else:
            self.shortcut = None
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(
            in_channels, bottleneck_channels, 1, stride=s1, bias=False,
            norm=FrozenBatchNorm2d(bottleneck_channels), relu=True,
        )
        self.conv2 = Conv2d(
            bottleneck_channels, bottleneck_channels, 3, stride=s3, padding=1, bias=False,
            groups=num_groups, norm=FrozenBatchNorm2d(bottleneck_channels), relu=True,
        )
        self.conv3 = Conv2d(
            bottleneck_channels, out_channels, 1, bias=False,
            norm=FrozenBatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        return add_relu(out, x if self.shortcut is None else self.shortcut(x), out=out)


class ResNet(nn.Module):
    """Stem + stages res2..res5; returns ``{"res2": C2, ..., "res5": C5}``."""

    def __init__(
        self, *, blocks_per_stage: tuple[int, int, int, int], num_groups: int,
        width_per_group: int, stride_in_1x1: bool,
    ):
        super().__init__()
        self.stem = BasicStem(3, 64)
        in_channels, out_channels = 64, 256
        bottleneck = num_groups * width_per_group
        self.stage_names = []
        for i, num_blocks in enumerate(blocks_per_stage):
            blocks = []
            for b in range(num_blocks):
                blocks.append(BottleneckBlock(
                    in_channels, out_channels, bottleneck_channels=bottleneck,
                    stride=1 if (i == 0 or b > 0) else 2, num_groups=num_groups,
                    stride_in_1x1=stride_in_1x1,
                ))
                in_channels = out_channels
            name = f"res{i + 2}"
            # Sequential indices are the checkpoint's own names: res2.0.conv1.weight, ...
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            out_channels *= 2
            bottleneck *= 2

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        outputs = {}
        for name in self.stage_names:
            cancel.check()
            x = getattr(self, name)(x)
            outputs[name] = x
        return outputs


def add_upsampled(x: torch.Tensor, small: torch.Tensor) -> None:
    """``x += F.interpolate(small, scale_factor=2, mode="nearest")``, in place; by
    broadcasting (no upsampled map is built) when ``x`` is exactly twice ``small``'s size,
    as it always is for inputs padded to a multiple of 32."""
    n, c, h, w = small.shape
    if x.shape[-2:] == (2 * h, 2 * w):
        x.view(n, c, h, 2, w, 2).add_(small[:, :, :, None, :, None])
    else:
        x += F.interpolate(small, scale_factor=2.0, mode="nearest")


class FPN(nn.Module):
    """Top-down pyramid over res2..res5 plus a stride-2 subsample of p5 (``p6``).

    Returns ``{"p2": ..., "p6": ...}``, 256 channels each, strides 4..64.
    """

    def __init__(self, bottom_up: ResNet, *, out_channels: int = 256):
        super().__init__()
        self.bottom_up = bottom_up
        in_channels = (256, 512, 1024, 2048)
        for level, cin in zip(range(2, 6), in_channels):
            self.add_module(f"fpn_lateral{level}", nn.Conv2d(cin, out_channels, 1))
            self.add_module(f"fpn_output{level}", Conv2d(out_channels, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.bottom_up(x)
        outputs = {}
        inner = None
        for level in (5, 4, 3, 2):
            lateral = getattr(self, f"fpn_lateral{level}")(c[f"res{level}"])
            if inner is not None:
                # The upsampled map is the previous pre-output-conv sum, not p_{k+1}.
                add_upsampled(lateral, inner)
            inner = lateral
            outputs[f"p{level}"] = getattr(self, f"fpn_output{level}")(inner)
        outputs["p6"] = outputs["p5"][:, :, ::2, ::2]  # detectron2's max_pool(k=1, s=2)
        return dict(sorted(outputs.items()))
