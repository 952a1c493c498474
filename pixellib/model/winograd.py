"""3x3 convolution by Winograd's minimal filtering F(4x4, 3x3), in plain torch.

The FPN output convs and the RPN conv run 256 -> 256 3x3 convolutions over the stride-4 and
stride-8 maps: about half of a few-object photo's arithmetic. A direct convolution spends 9
multiply-adds per input channel and output pixel; F(4x4, 3x3) transforms 6x6 input tiles and
the 3x3 filter into a 6x6 domain where the convolution is 36 independent matrix products,
then transforms back to 4x4 output tiles: 36 / 16 = 2.25 multiply-adds instead of 9.

The transforms (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015, with
interpolation points 0, +-1, +-2 and infinity) are exact in real arithmetic; in float32 the
result differs from a direct convolution by a few 1e-5 of the output's scale, a few times the
direct convolution's own rounding, far below what moves a detection (checked against the
golden outputs in the test suite).

Work is done in bands of tile rows so that the transformed tiles of a band stay in cache
between the input transform, the matrix products and the output transform.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import env_switch
from . import ops

# G (6x3): filter transform. B^T and A^T are applied below as explicit sums.
_G = (
    (1 / 4, 0.0, 0.0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0.0, 0.0, 1.0),
)

# Below these sizes the direct convolution (oneDNN) is as fast or faster on 2 CPU cores:
# with fewer channels the matrix products are too thin (64 channels: slower; 256: 1.5x
# faster), with fewer pixels the per-band overhead dominates. Work is C_in * C_out * H * W.
# 128 channels (res3) would be 10-20 % faster on those convs, but its rounding, early in the
# network, moves the 224x224 mask probabilities by up to 4e-3, past the stage tests' 2e-3.
MIN_CHANNELS = 256
MIN_WORK = 6e7
# Tiles per band: 272 keeps a band's transformed tiles (36 x 272 x 256 floats, 10 MB) within
# the shared cache of the machine measured, and the matrix products long enough.
TILES_PER_BAND = 272
# The product that carries the bias: row 1, column 1 of the 6x6 tile.
BIAS_SLOT = 1 * 6 + 1


def enabled() -> bool:
    """Winograd is on unless ``PIXELLIB_NO_WINOGRAD`` is set (``1``; see
    :func:`pixellib.config.env_switch`)."""
    return not env_switch("PIXELLIB_NO_WINOGRAD")


def applies(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether ``conv(x)`` is a 3x3, stride 1, padding 1 CPU float32 convolution large
    enough for :func:`conv3x3` to beat the direct convolution (and not under autograd)."""
    return (
        conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
        and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
        and min(conv.in_channels, conv.out_channels) >= MIN_CHANNELS
        and x.dim() == 4 and x.device.type == "cpu"
        and x.dtype == torch.float32 and conv.weight.dtype == torch.float32
        and conv.in_channels * conv.out_channels * x.shape[2] * x.shape[3] >= MIN_WORK
        and not torch.is_autocast_enabled("cpu")
        and not (torch.is_grad_enabled() and conv.weight.requires_grad)
        and enabled()
    )


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """(K, C, 3, 3) filters -> (36, C, K) float32, computed in float64."""
    g = torch.tensor(_G, dtype=torch.float64)
    u = torch.einsum("ai,kcij,bj->abck", g, weight.detach().double().cpu(), g)
    return u.reshape(36, weight.shape[1], weight.shape[0]).to(torch.float32).contiguous()


def _input_transform(d, out, tmp) -> None:
    """``out[i] = sum_j B^T[i, j] d[j]`` for the six rows of B^T (6 views in, 6 out)."""
    a, b, c = tmp
    torch.add(d[4], d[2], alpha=-4, out=a)
    torch.add(d[3], d[1], alpha=-4, out=b)
    torch.add(a, b, out=out[1])                  # -4d1 - 4d2 + d3 + d4
    torch.sub(a, b, out=out[2])                  # 4d1 - 4d2 - d3 + d4
    torch.sub(d[4], d[2], out=c)
    torch.sub(d[3], d[1], out=a)
    torch.add(c, a, alpha=2, out=out[3])         # -2d1 - d2 + 2d3 + d4
    torch.add(c, a, alpha=-2, out=out[4])        # 2d1 - d2 - 2d3 + d4
    torch.sub(d[0], d[2], out=b)
    torch.add(c, b, alpha=4, out=out[0])         # 4d0 - 5d2 + d4
    torch.sub(d[5], d[3], out=b)
    torch.add(b, a, alpha=-4, out=out[5])        # 4d1 - 5d3 + d5


def _output_transform(m, out, tmp, *, relu: bool = False) -> None:
    """``out[i] = sum_j A^T[i, j] m[j]`` for the four rows of A^T (6 views in, 4 out); with
    ``relu``, clamped at zero by the last op that writes each row."""
    last = ops.add_relu if relu else torch.add
    p, q, r, s = tmp
    torch.add(m[1], m[2], out=p)
    torch.sub(m[1], m[2], out=q)
    torch.add(m[3], m[4], out=r)
    torch.sub(m[3], m[4], out=s)
    torch.add(m[0], p, out=out[0])
    last(out[0], r, out=out[0])                  # m0 + m1 + m2 + m3 + m4
    last(q, s, alpha=2, out=out[1])              # m1 - m2 + 2m3 - 2m4
    last(p, r, alpha=4, out=out[2])              # m1 + m2 + 4m3 + 4m4
    torch.add(q, s, alpha=8, out=out[3])
    last(out[3], m[5], out=out[3])               # m1 - m2 + 8m3 - 8m4 + m5


def conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, *,
            relu: bool = False) -> torch.Tensor:
    """``F.conv2d(x, w, bias, padding=1)`` for one image, with ``u = transform_weight(w)``;
    with ``relu``, followed by ReLU (fused into the output transform's last adds).

    ``x`` is (N, C, H, W) in any memory format; the result is (N, K, H, W) channels-last.
    """
    n, c, h, w = x.shape
    if n != 1:
        out = torch.cat([conv3x3(x[i:i + 1], u, bias, relu=relu) for i in range(n)])
        return out.contiguous(memory_format=torch.channels_last)
    k = u.shape[2]
    th, tw = (h + 3) // 4, (w + 3) // 4
    src = x[0].permute(1, 2, 0)                              # (H, W, C)
    band = max(1, min(th, round(TILES_PER_BAND / tw)))
    wp = 4 * tw + 2
    new = src.new_empty
    # Padded input rows of one band: 4 * band + 2 rows, 1 zero column left, >= 1 right.
    pad = new(4 * band + 2, wp, c)
    pad[:, 0].zero_()
    pad[:, w + 1:].zero_()
    rows = new(6, band, wp, c)
    row_tmp = [new(band, wp, c) for _ in range(3)]
    v = new(6, 6, band, tw, c)
    col_tmp = [new(6, band, tw, c) for _ in range(3)]
    prod = new(36, band * tw, k)
    half = new(6, 4, band, tw, k)
    half_tmp = [new(6, band, tw, k) for _ in range(4)]
    out_tmp = [new(4, band, tw, k) for _ in range(4)]
    full = 4 * th == h and 4 * tw == w
    out = new(th, 4, tw, 4, k)
    for t0 in range(0, th, band):
        nb = min(band, th - t0)
        # Input rows 4*t0 - 1 ... 4*(t0 + nb) (inclusive), zero outside the image.
        lo, hi = 4 * t0 - 1, 4 * (t0 + nb) + 1
        s0, s1 = max(lo, 0), min(hi, h)
        if s0 > lo:
            pad[: s0 - lo].zero_()
        pad[s0 - lo: s1 - lo, 1: w + 1] = src[s0:s1]
        if hi > s1:
            pad[s1 - lo: hi - lo].zero_()
        d = [pad[j: j + 4 * nb: 4] for j in range(6)]       # (nb, wp, C) each
        r = rows[:, :nb]
        _input_transform(d, r, [t[:nb] for t in row_tmp])
        cols = [r[:, :, j: j + 4 * tw: 4] for j in range(6)]  # (6, nb, tw, C) each
        vb = v[:, :, :nb]
        _input_transform(cols, vb.transpose(0, 1), [t[:, :nb] for t in col_tmp])
        if nb < band:
            vb = vb.contiguous()
        pb = prod[:, : nb * tw]
        torch.bmm(vb.reshape(36, nb * tw, c), u, out=pb)
        if bias is not None:
            # A^T e1 = (1, 1, 1, 1): a constant added to product (1, 1) reaches all 16
            # outputs of the tile, so the bias costs 1/36 of a pass over the products.
            pb[BIAS_SLOT] += bias
        m = pb.view(6, 6, nb, tw, k)
        hb = half[:, :, :nb]
        _output_transform(m.transpose(0, 1), hb.transpose(0, 1), [t[:, :nb] for t in half_tmp])
        ob = out[t0: t0 + nb]
        _output_transform(hb, ob.permute(1, 3, 0, 2, 4), [t[:, :nb] for t in out_tmp],
                          relu=relu)
    out = out.view(1, 4 * th, 4 * tw, k)
    if not full:
        out = out[:, :h, :w].contiguous()
    # Permuted from (1, H, W, K) so that the batch stride is H*W*K: torch then sees a
    # channels-last tensor (a permuted-then-unsqueezed view would make convs copy it).
    return out.permute(0, 3, 1, 2)
