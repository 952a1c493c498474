"""Winograd F(4x4, 3x3) against the direct convolution (pixellib.model.winograd)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pixellib.model import winograd
from pixellib.model.layers import Conv2d, FrozenBatchNorm2d


def _direct64(x, w, b):
    return F.conv2d(x.double(), w.double(), None if b is None else b.double(), padding=1)


def _scaled_error(y, ref):
    return ((y.double() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("n,c,k,h,w,bias", [
    (1, 8, 5, 16, 24, True),      # whole tiles
    (1, 3, 7, 9, 7, True),        # partial last tile row and column
    (1, 4, 4, 1, 1, False),       # a single pixel, no bias
    (1, 6, 2, 2, 13, True),
    (2, 5, 3, 11, 6, True),       # a batch of two
])
@pytest.mark.parametrize("tiles_per_band", [1, 3, 272])
@pytest.mark.parametrize("relu", [False, True])
def test_matches_direct_convolution(n, c, k, h, w, bias, tiles_per_band, relu, monkeypatch):
    monkeypatch.setattr(winograd, "TILES_PER_BAND", tiles_per_band)  # several bands, last short
    g = torch.Generator().manual_seed(n * 1000 + c * 100 + h + w)
    x = torch.randn(n, c, h, w, generator=g)
    weight = torch.randn(k, c, 3, 3, generator=g)
    b = torch.randn(k, generator=g) if bias else None
    y = winograd.conv3x3(x, winograd.transform_weight(weight), b, relu=relu)
    ref = _direct64(x, weight, b)
    if relu:
        ref = ref.relu()
    assert y.shape == ref.shape and y.dtype == torch.float32
    assert _scaled_error(y, ref) < 1e-5
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_error_stays_near_the_direct_convolutions_at_model_size():
    """256 -> 256 channels over a stride-4 map: the case the model runs."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 256, 40, 52, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(256, 256, 3, 3, generator=g) / 48
    b = torch.randn(256, generator=g)
    ref = _direct64(x, weight, b)
    direct = _scaled_error(F.conv2d(x, weight, b, padding=1), ref)
    ours = _scaled_error(winograd.conv3x3(x, winograd.transform_weight(weight), b), ref)
    assert ours < 2e-5
    assert ours < 20 * max(direct, 1e-7)


def test_transformed_filter_of_a_delta_is_the_interpolation_of_ones():
    """G e_1 G^T for the centre tap: the outer product of G's middle column."""
    w = torch.zeros(1, 1, 3, 3)
    w[0, 0, 1, 1] = 1
    u = winograd.transform_weight(w).view(6, 6)
    col = torch.tensor([0, -1 / 6, 1 / 6, 1 / 12, -1 / 12, 0], dtype=torch.float64)
    torch.testing.assert_close(u.double(), torch.outer(col, col), rtol=0, atol=1e-7)


def _big_conv(**kwargs):
    return Conv2d(256, 256, 3, padding=1, **kwargs).requires_grad_(False)


@pytest.mark.parametrize("case,expected", [
    ("model size", True),
    ("small map", False),
    ("few channels", False),
    ("stride 2", False),
    ("grouped", False),
    ("1x1", False),
    ("float64", False),
    ("autocast", False),
    ("needs grad", False),
    ("switched off", False),
])
def test_applies_only_where_it_pays_and_is_exact(case, expected, monkeypatch):
    conv = {"few channels": lambda: Conv2d(128, 256, 3, padding=1),
            "stride 2": lambda: _big_conv(stride=2),
            "grouped": lambda: _big_conv(groups=32),
            "1x1": lambda: Conv2d(256, 256, 1)}.get(case, _big_conv)()
    side = 24 if case == "small map" else 64
    x = torch.zeros(1, conv.in_channels, side, side)
    if case == "float64":
        conv, x = conv.double(), x.double()
    if case == "needs grad":
        conv.requires_grad_(True)
    if case == "switched off":
        monkeypatch.setenv("PIXELLIB_NO_WINOGRAD", "1")
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast"):
        with torch.set_grad_enabled(case == "needs grad"):
            assert winograd.applies(conv, x) is expected


def test_conv_layer_uses_it_and_rebuilds_the_cache_when_the_weight_changes(monkeypatch):
    torch.manual_seed(0)
    norm = FrozenBatchNorm2d(256)
    norm.weight.uniform_(0.5, 2)
    norm.running_var.uniform_(0.5, 2)
    conv = _big_conv(bias=False, norm=norm, relu=True)
    torch.nn.init.normal_(conv.weight, std=0.02)
    x = torch.randn(1, 256, 48, 48)
    transforms = []
    real = winograd.transform_weight
    monkeypatch.setattr(winograd, "transform_weight", lambda w: transforms.append(1) or real(w))
    with torch.no_grad():
        unfolded = conv(x)  # an unfolded norm: the direct convolution, then norm and ReLU
        assert not transforms
        torch.testing.assert_close(
            unfolded, F.relu(norm(F.conv2d(x, conv.weight, None, padding=1))))
        conv.fold_norm()  # scales the weight in place
        folded = conv(x)
        again = conv(x)
        assert len(transforms) == 1  # cached
        conv.weight.mul_(2)  # changed in place: the cached transform is stale
        doubled = conv(x)
    assert len(transforms) == 2
    torch.testing.assert_close(folded, unfolded, rtol=1e-4, atol=1e-4)
    assert torch.equal(again, folded)
    torch.testing.assert_close(doubled, F.relu(F.conv2d(x, conv.weight, conv.bias, padding=1)),
                               rtol=1e-4, atol=1e-4)
    assert (folded >= 0).all() and (folded == 0).any()


def test_the_model_runs_its_large_3x3_convolutions_this_way(r50_model, monkeypatch):
    """So that the golden-parity tests cover it: FPN outputs and RPN conv at strides 4
    and 8, and the res4/res5 3x3 convs, at the default input size."""
    import cv2

    from pixellib.predictor import Predictor

    shapes = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3",
                        lambda x, *a, **k: shapes.append(tuple(x.shape[1:])) or real(x, *a, **k))
    image = cv2.imread(str(Path(__file__).parents[1] / "data" / "images" / "small.jpg"))
    Predictor(r50_model)(image)
    assert (256, 200, 272) in shapes and (256, 100, 136) in shapes
    assert shapes.count((256, 50, 68)) >= 6 and (512, 25, 34) in shapes


def test_output_is_channels_last_for_the_next_convolution():
    """The next conv must not copy it to NCHW: torch decides by the strides, batch included."""
    x = torch.randn(1, 8, 12, 16).contiguous(memory_format=torch.channels_last)
    y = winograd.conv3x3(x, winograd.transform_weight(torch.randn(4, 8, 3, 3)), None)
    assert y.stride() == torch.empty(1, 4, 12, 16).contiguous(
        memory_format=torch.channels_last).stride()
    with torch.profiler.profile() as prof:
        z = F.conv2d(y, torch.randn(5, 4, 1, 1))
    assert not [e.name for e in prof.events() if e.name in ("aten::clone", "aten::copy_")]
    assert z.is_contiguous(memory_format=torch.channels_last)


def test_relu_without_fused_kernel(monkeypatch):
    from pixellib.model import ops

    monkeypatch.setattr(ops, "_ADD_RELU", None)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 6, 13, 10, generator=g)
    weight, b = torch.randn(4, 6, 3, 3, generator=g), torch.randn(4, generator=g)
    y = winograd.conv3x3(x, winograd.transform_weight(weight), b, relu=True)
    assert _scaled_error(y, _direct64(x, weight, b).relu()) < 1e-5
