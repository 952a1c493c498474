"""Shared fixtures: synthetic checkpoints (written once per session) and models."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("PIXELLIB_NO_TORCHVISION", "1")  # the plain-torch ops are the ones tested

if os.environ.get("PIXELLIB_TEST_DEVICE", "cpu").startswith("cuda"):
    import torch

    # fp32 means fp32 for parity: no TF32 in cuDNN's convolutions or cuBLAS's matmuls.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


@pytest.fixture(scope="session")
def r50_checkpoint(tmp_path_factory):
    from pixellib.checkpoint.synthetic import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "pointrend_resnet50.pkl",
                            "resnet50", 0)


@pytest.fixture(scope="session")
def x101_checkpoint(tmp_path_factory):
    from pixellib.checkpoint.synthetic import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "pointrend_resnet101.pkl",
                            "resnext101_32x8d", 1)


@pytest.fixture(scope="session")
def r50_model(r50_checkpoint):
    from pixellib.predictor import load_model

    return load_model(r50_checkpoint)


@pytest.fixture(scope="session")
def x101_model(x101_checkpoint):
    from pixellib.predictor import load_model

    return load_model(x101_checkpoint, backbone="resnet101")
