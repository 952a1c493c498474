"""Model pieces built small: shapes, exact rewrites, schedules, empty inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference_ops
from pixellib.config import ARCHITECTURES
from pixellib.model.backbone import FPN, BottleneckBlock, ResNet, add_upsampled
from pixellib.model.detector import build_model, postprocess, state_dict_shapes
from pixellib.model.layers import Conv2d, FrozenBatchNorm2d, fold_frozen_norms
from pixellib.model.point_rend import StandardPointHead, subdivision_schedule
from pixellib.model.rpn import AnchorGenerator, cell_anchors


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)


def test_frozen_bn_keeps_eps_and_folds_exactly():
    conv = Conv2d(4, 6, 3, padding=1, bias=False, norm=FrozenBatchNorm2d(6))
    _randomise(conv)
    x = torch.randn(2, 4, 9, 7)
    bn = conv.norm
    want = (F.conv2d(x, conv.weight, padding=1) - bn.running_mean.view(-1, 1, 1)) / torch.sqrt(
        bn.running_var.view(-1, 1, 1) + 1e-5) * bn.weight.view(-1, 1, 1) + bn.bias.view(-1, 1, 1)
    torch.testing.assert_close(conv(x), want, rtol=1e-5, atol=1e-5)
    fold_frozen_norms(conv)
    assert conv.norm is None and conv.bias is not None
    torch.testing.assert_close(conv(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride_in_1x1,where", [(True, "conv1"), (False, "conv2")])
def test_bottleneck_stride_placement(stride_in_1x1, where):
    block = BottleneckBlock(8, 16, bottleneck_channels=4, stride=2, num_groups=2,
                            stride_in_1x1=stride_in_1x1)
    assert getattr(block, where).stride == (2, 2)
    assert block.shortcut.stride == (2, 2) and block.conv3.stride == (1, 1)
    assert block(torch.randn(1, 8, 10, 10)).shape == (1, 16, 5, 5)


def test_fpn_levels_and_sizes():
    net = FPN(ResNet(blocks_per_stage=(1, 1, 1, 1), num_groups=1, width_per_group=8,
                     stride_in_1x1=True))
    _randomise(net)
    out = net(torch.randn(1, 3, 96, 160))
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(24, 40), (12, 20), (6, 10), (3, 5),
                                                           (2, 3)]
    torch.testing.assert_close(out["p6"], out["p5"][:, :, ::2, ::2])


def test_state_dict_names_match_reference_table():
    import json
    from pathlib import Path

    table = json.loads((Path(__file__).parents[1] / "data" / "pointrend_keys.json").read_text())
    for arch in ("resnet50", "resnext101_32x8d"):
        shapes = state_dict_shapes(arch)
        assert shapes == {k: tuple(v) for k, v in table[arch].items()}
    assert ARCHITECTURES["resnext101_32x8d"].pixel_std != (1.0, 1.0, 1.0)


def test_cell_anchors_and_grid_order():
    np.testing.assert_allclose(cell_anchors(32)[0].numpy(),
                               [-22.627417, -11.313708, 22.627417, 11.313708], rtol=1e-6)
    anchors = AnchorGenerator(sizes=(32,), strides=(4,))([(2, 3)])[0]
    assert anchors.shape == (2 * 3 * 3, 4)
    # flat index (y * W + x) * A + a; centre of (y=1, x=2) is (8, 4): offset 0
    a = anchors[(1 * 3 + 2) * 3 + 1]
    torch.testing.assert_close((a[:2] + a[2:]) / 2, torch.tensor([8.0, 4.0]))


def test_subdivision_schedule():
    assert subdivision_schedule(7, 5, 784) == (28, 3)
    assert subdivision_schedule(7, 5, 28 * 28 * 4) == (56, 2)


def test_point_head_rewrites_are_exact():
    head = StandardPointHead(fine_channels=6, num_classes=5, fc_dim=4, num_fc=3)
    _randomise(head, 3)
    fine, coarse = torch.randn(3, 6, 11), torch.randn(3, 5, 11)
    # reference: Conv1d layers over concatenated channels, coarse appended after each layer
    x = torch.cat((fine, coarse), 1)
    for k in range(1, 4):
        x = torch.cat((F.relu(getattr(head, f"fc{k}")(x)), coarse), 1)
    want = head.predictor(x)
    torch.testing.assert_close(reference_ops.point_head_logits(head, fine, coarse), want,
                               rtol=1e-5, atol=1e-5)
    classes = torch.tensor([4, 0, 2])
    got = reference_ops.point_head_class_logits(head, fine.transpose(1, 2),
                                                coarse.transpose(1, 2), classes)
    torch.testing.assert_close(got, want[torch.arange(3), classes], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def random_r50():
    model = build_model("resnet50")
    _randomise(model, 1)
    with torch.no_grad():  # keep activations tame: R50 sees raw pixels - mean
        model.backbone.bottom_up.stem.conv1.weight.mul_(1 / 64)
    return fold_frozen_norms(model)


def test_the_model_is_built_on_the_cpu_whatever_the_default_device():
    """The model's storage came from the caller's default device (``torch.device`` as a
    context, ``set_default_device``): under "meta" it stayed without data."""
    with torch.device("meta"):
        model = build_model("resnet50")
    assert {t.device.type for t in (*model.parameters(), *model.buffers())} == {"cpu"}


def test_full_model_on_tiny_and_odd_images(random_r50):
    with torch.inference_mode():
        for h, w in [(1, 1), (37, 5), (64, 64)]:
            out = random_r50(torch.rand(3, h, w) * 255, (h, w), score_thresh=0.0)
            n = len(out.boxes)
            assert out.masks.shape == (n, h, w) and out.masks.dtype == torch.bool
            assert out.scores.shape == (n,) and out.classes.dtype == torch.int64
            assert n <= 100


def test_no_detections_gives_empty_typed_output(random_r50):
    with torch.inference_mode():
        out = random_r50(torch.rand(3, 40, 60) * 255, (80, 120), score_thresh=1.0)
    assert out.boxes.shape == (0, 4) and out.masks.shape == (0, 80, 120)
    assert out.masks.dtype == torch.bool


def test_postprocess_scales_clips_and_drops_empty():
    boxes = torch.tensor([[10.0, 10, 20, 30], [-5.0, 0, 250, 100], [50.0, 50, 50, 60]])
    masks = torch.ones(3, 28, 28)
    out = postprocess(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 2, 3]), masks,
                      (100, 200), (50, 100))
    torch.testing.assert_close(out.boxes, torch.tensor([[5.0, 5, 10, 15], [0.0, 0, 100, 50]]))
    assert out.classes.tolist() == [1, 2] and out.masks.shape == (2, 50, 100)


def test_projected_point_head_equals_sampling_then_mlp():
    """project_fine_map, coarse_table + projected_class_logits == sample the features and the
    coarse logits, then the MLP."""
    from pixellib.model.point_rend import sample_image_features

    head = StandardPointHead(fine_channels=6, num_classes=5, fc_dim=4, num_fc=3)
    _randomise(head, 4)
    fine_map = torch.randn(1, 6, 9, 13)
    coarse = torch.randn(3, 5, 7, 7)
    boxes = torch.tensor([[0.0, 0, 20, 30], [10.0, 5, 52, 36], [-3.0, 2, 8, 40]])
    points = torch.rand(3, 17, 2) * 1.2 - 0.1  # includes points near and past the borders
    classes = torch.tensor([1, 4, 0])
    coarse_at = reference_ops.point_sample(coarse, points).transpose(1, 2)
    fine = sample_image_features(fine_map, 4, boxes, points)
    want = reference_ops.point_head_class_logits(head, fine, coarse_at, classes)
    projected = sample_image_features(head.project_fine_map(fine_map), 4, boxes, points)
    table = head.coarse_table(coarse, classes)
    for chunk in (1, 17, 40, None):  # one box per chunk, several, all, the device's
        got = head.projected_class_logits(projected, table, 7, points, classes, chunk)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_sample_rows_equals_grid_sample():
    from pixellib.model import ops
    from pixellib.model.point_rend import box_map_taps

    g = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 5, 7, 7, generator=g)
    points = torch.rand(3, 40, 2, generator=g) * 1.3 - 0.15  # past the borders: zero padding
    want = reference_ops.point_sample(maps, points).transpose(1, 2)
    taps, weights = box_map_taps(7, points)
    got = F.embedding_bag(taps, ops.channels_last_rows(maps), per_sample_weights=weights,
                          mode="sum").view(3, 40, 5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    fmap = torch.randn(1, 4, 9, 13, generator=g)
    rows = ops.sample_rows(ops.channels_last_rows(fmap), 9, 13, points[0])
    torch.testing.assert_close(rows, reference_ops.point_sample(fmap, points[:1])[0].t(), rtol=1e-5,
                               atol=1e-5)


def test_mask_head_same_masks_whether_fc1_goes_before_or_after_sampling(random_r50, monkeypatch):
    """The two equivalent orders of fc1 and point sampling (chosen by box count) agree."""
    from pixellib.model.point_rend import PointRendMaskHead

    head = random_r50.roi_heads.mask_head
    p2 = torch.randn(1, 256, 24, 40)
    boxes = torch.tensor([[4.0, 8.0, 60.0, 90.0], [30.0, 2.0, 150.0, 70.0]])
    classes = torch.tensor([3, 17])
    with torch.inference_mode():
        per_point = head.mask_logits(p2, boxes, classes)  # 2 boxes: fewer points than pixels
        monkeypatch.setattr(PointRendMaskHead, "_fine_inputs", lambda self, f, n: (
            self.point_head.project_fine_map(f),
            ops_rows(self.point_head.project_fine_map(f)), True))
        projected = head.mask_logits(p2, boxes, classes)
    torch.testing.assert_close(per_point, projected, rtol=1e-4, atol=1e-4)


def ops_rows(fmap):
    from pixellib.model import ops

    return ops.channels_last_rows(fmap)


def test_fpn_upsampled_add_equals_nearest_interpolation():
    small = torch.randn(1, 4, 3, 5).contiguous(memory_format=torch.channels_last)
    for x in (torch.randn(1, 4, 6, 10), torch.randn(1, 4, 6, 10).contiguous(
            memory_format=torch.channels_last)):
        want = x + F.interpolate(small, scale_factor=2.0, mode="nearest")
        add_upsampled(x, small)
        assert torch.equal(x, want)


def test_box_head_takes_channels_last_pooled_features_without_reordering():
    from pixellib.model.roi_heads import FastRCNNConvFCHead

    torch.manual_seed(0)
    head = FastRCNNConvFCHead(in_features=8 * 3 * 3, fc_dim=16).eval()
    x = torch.randn(5, 8, 3, 3)
    with torch.no_grad():
        want = head(x)  # NCHW: the plain flatten
        got = head(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(got, want)
        head.fc1.weight.mul_(-1)  # the cached permuted weight must follow
        torch.testing.assert_close(head(x.contiguous(memory_format=torch.channels_last)),
                                   head(x))
    assert not torch.equal(head(x), want)
