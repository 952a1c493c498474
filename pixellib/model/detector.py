"""The whole PointRend R-CNN forward for one image (detectron2 ``GeneralizedRCNN`` at test
time with PixelLib's PointRend config; docs/design.md walks through it): normalise and pad,
backbone + FPN, RPN, box head, PointRend mask head, then rescale to the original image and
paste the masks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ARCHITECTURES, InferenceConfig, ModelConfig
from ..runtime import cancel
from . import ops
from .backbone import FPN, ResNet
from .point_rend import PointRendMaskHead
from .roi_heads import StandardROIHeads
from .rpn import RPN

SIZE_DIVISIBILITY = 32  # stride of res5: the padded input is a multiple of it


@dataclass
class RawDetections:
    """Model output before conversion to numpy: boxes in original-image pixels."""

    boxes: torch.Tensor  # (N, 4) float32
    scores: torch.Tensor  # (N,) float32
    classes: torch.Tensor  # (N,) int64
    masks: torch.Tensor  # (N, H0, W0) bool


_DEFAULTS = InferenceConfig()


class PointRendRCNN(nn.Module):
    """``inference`` sets the search (RPN top-k, NMS thresholds, detections per image) at
    build; the post-processing settings come with each call (the caller owns them)."""

    def __init__(self, config: ModelConfig, inference: InferenceConfig | None = None):
        super().__init__()
        inference = inference or _DEFAULTS
        self.config = config
        self.backbone = FPN(ResNet(
            blocks_per_stage=config.blocks_per_stage, num_groups=config.num_groups,
            width_per_group=config.width_per_group, stride_in_1x1=config.stride_in_1x1,
        ))
        self.proposal_generator = RPN(
            pre_nms_topk=inference.rpn_pre_nms_topk, post_nms_topk=inference.rpn_post_nms_topk,
            nms_thresh=inference.rpn_nms_thresh,
        )
        self.roi_heads = StandardROIHeads(
            mask_head=PointRendMaskHead(), num_classes=config.num_classes,
            nms_thresh=inference.box_nms_thresh,
            max_detections=inference.detections_per_image,
        )
        self.register_buffer("pixel_mean", torch.empty(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.empty(3, 1, 1), persistent=False)
        self.reset_constants()
        self.eval()

    def reset_constants(self) -> None:
        """(Re)compute the non-persistent buffers, e.g. after ``to_empty``."""
        device = self.pixel_mean.device
        if device.type == "meta":
            return
        self.pixel_mean = torch.tensor(self.config.pixel_mean, device=device).view(3, 1, 1)
        self.pixel_std = torch.tensor(self.config.pixel_std, device=device).view(3, 1, 1)
        self.proposal_generator.anchor_generator.reset_constants()

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """(3, h, w) BGR float 0..255 -> (1, 3, Hp, Wp): normalised, then zero-padded at the
        bottom/right to multiples of 32 (zero = the mean colour)."""
        return self.preprocess_batch([image])

    def preprocess_batch(self, images: list[torch.Tensor]) -> torch.Tensor:
        """(3, h_i, w_i) BGR float images -> (N, 3, Hp, Wp), each normalised and zero-padded
        at the bottom/right to the largest padded size of the batch (multiples of 32)."""
        hp, wp = (max(padded_size(tuple(im.shape[-2:]))[k] for im in images) for k in (0, 1))
        x = torch.zeros((len(images), 3, hp, wp), dtype=torch.float32, device=self.device)
        for i, image in enumerate(images):
            h, w = image.shape[-2:]
            x[i, :, :h, :w] = (image.to(self.device, torch.float32) - self.pixel_mean) \
                / self.pixel_std
        # NHWC throughout: oneDNN's convolutions run ~30% faster on CPU, and every later
        # gather (RoIAlign windows, point rows) reads each position's channels contiguously.
        return x.contiguous(memory_format=torch.channels_last)

    def forward(
        self, image: torch.Tensor, original_size: tuple[int, int], *,
        score_thresh: float = _DEFAULTS.score_thresh,
        mask_threshold: float = _DEFAULTS.mask_threshold,
        keep_classes: torch.Tensor | None = None,
    ) -> RawDetections:
        """``image``: the resized (3, h, w) BGR float image; ``original_size``: (H0, W0).
        A detection needs a score strictly above ``score_thresh``; a mask pixel is foreground
        where the pasted probability is at least ``mask_threshold``.

        ``keep_classes`` (class ids): only detections of these classes, chosen before the mask
        head, so no mask is computed or pasted for the others. The result is the same as
        filtering afterwards: every box gets its mask on its own, and the mask head is told
        how many boxes there were before filtering so that it computes the same way.

        Returns detections in original-image pixels, by descending score.
        """
        return self.forward_batch([image], [original_size], score_thresh=score_thresh,
                                  mask_threshold=mask_threshold, keep_classes=keep_classes)[0]

    def forward_batch(
        self, images: list[torch.Tensor], original_sizes: list[tuple[int, int]], *,
        score_thresh: float = _DEFAULTS.score_thresh,
        mask_threshold: float = _DEFAULTS.mask_threshold,
        keep_classes: torch.Tensor | None = None,
    ) -> list[RawDetections]:
        """:meth:`forward` for several images: one backbone + FPN pass over the images
        padded into one tensor, then the heads image by image, each on its own padded extent
        of the feature maps (what a one-image pass would see).

        Images of the same padded size (multiples of 32) get the numbers of one-image calls,
        up to float rounding. A smaller image padded up to a larger one's size sees the
        padding's features near its bottom/right border instead of the convolutions' zero
        padding, which can move its results slightly (detectron2's batches do the same);
        :meth:`pixellib.predictor.Predictor.predict_batch` groups images by padded size so
        that its results equal one-image calls.
        """
        sizes = [tuple(image.shape[-2:]) for image in images]
        features = self.backbone(self.preprocess_batch(images))
        out = []
        for i, (size, original_size) in enumerate(zip(sizes, original_sizes)):
            own = _image_features(features, i, padded_size(size))
            out.append(self._detect_one(own, size, original_size, score_thresh=score_thresh,
                                        mask_threshold=mask_threshold,
                                        keep_classes=keep_classes))
        return out

    def _detect_one(
        self, features: dict[str, torch.Tensor], size: tuple[int, int],
        original_size: tuple[int, int], *, score_thresh: float, mask_threshold: float,
        keep_classes: torch.Tensor | None,
    ) -> RawDetections:
        """RPN, box head, mask head and pasting for one image's (1, C, h, w) feature maps."""
        cancel.check()
        proposals, _ = self.proposal_generator(features, size)
        cancel.check()
        boxes, scores, classes = self.roi_heads.detect(
            features, proposals, size, score_thresh=score_thresh
        )
        cancel.check()
        found = len(boxes)
        if keep_classes is not None:
            keep = torch.isin(classes, keep_classes.to(classes.device))
            boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        masks = self.roi_heads.mask_head(features["p2"], boxes, classes, plan_boxes=found)
        return postprocess(boxes, scores, classes, masks, size, original_size, mask_threshold)


FEATURE_STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}


def padded_size(size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) rounded up to multiples of :data:`SIZE_DIVISIBILITY`: the backbone's input."""
    return tuple(-(-n // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY for n in size)


def _image_features(features: dict[str, torch.Tensor], index: int,
                    padded: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Image ``index``'s maps, cropped to what its own padded input would give."""
    own = {}
    for name, fmap in features.items():
        stride = FEATURE_STRIDES[name]
        h, w = -(-padded[0] // stride), -(-padded[1] // stride)
        own[name] = fmap[index:index + 1, :, :h, :w].contiguous(
            memory_format=torch.channels_last)
    return own


def postprocess(
    boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, masks: torch.Tensor,
    resized_size: tuple[int, int], original_size: tuple[int, int], mask_threshold: float = 0.5,
) -> RawDetections:
    """Scale boxes to the original image, clip, drop empty boxes, paste masks
    (detectron2's ``detector_postprocess``; docs/design.md, "Pasting masks")."""
    (h, w), (h0, w0) = resized_size, original_size
    boxes = boxes.clone()
    boxes[:, 0::2] *= w0 / w
    boxes[:, 1::2] *= h0 / h
    boxes = ops.clip_boxes(boxes, h0, w0)
    keep = ops.nonempty(boxes)
    boxes, scores, classes, masks = boxes[keep], scores[keep], classes[keep], masks[keep]
    return RawDetections(
        boxes, scores, classes, ops.paste_masks(masks, boxes, (h0, w0), mask_threshold)
    )


def build_model(
    arch: str | ModelConfig, inference: InferenceConfig | None = None
) -> PointRendRCNN:
    """An unloaded model (random-free: every weight must come from a checkpoint)."""
    config = ARCHITECTURES[arch] if isinstance(arch, str) else arch
    with torch.device("meta"):
        model = PointRendRCNN(config, inference)
    with torch.device("cpu"):  # whatever default device the caller set
        _allocate_on_cpu(model)
        model.eval()
        model.reset_constants()
    return model


def _allocate_on_cpu(model: nn.Module) -> None:
    """Give every meta parameter and buffer uninitialised CPU storage of its shape, as
    ``model.to_empty(device="cpu")`` does. Done by hand: ``to_empty``'s first call imports
    sympy inside torch, which adds a process-wide warnings filter, and undoing it with
    ``warnings.catch_warnings()`` would also drop filters other threads set meanwhile."""
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is not None:
                module._parameters[name] = nn.Parameter(
                    torch.empty(p.shape, dtype=p.dtype, device="cpu"),
                    requires_grad=p.requires_grad)
        for name, b in list(module._buffers.items()):
            if b is not None:
                module._buffers[name] = torch.empty(b.shape, dtype=b.dtype, device="cpu")


def state_dict_shapes(arch: str, *, folded: bool = False) -> dict[str, tuple[int, ...]]:
    """Every checkpoint key the model needs and its shape, without allocating weights; with
    ``folded``, those of a loaded model's state dict (batch norms folded into the convs)."""
    from .layers import fold_frozen_norms

    with torch.device("meta"):
        model = PointRendRCNN(ARCHITECTURES[arch])
        if folded:
            fold_frozen_norms(model)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
