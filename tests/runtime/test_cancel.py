"""Stopping a running inference at the model's next stage boundary (pixellib.runtime.cancel),
as the server does when a request gives up."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from pixellib.media.images import read_image
from pixellib.runtime.cancel import Cancelled, cancellable, check

IMAGES = Path(__file__).parents[1] / "data" / "images"


@pytest.fixture(scope="module")
def predictor(r50_model):
    from pixellib.predictor import Predictor

    return Predictor(r50_model, speed="rapid", confidence=0.5)


def _stage_log(model, log, stop):
    """Record the stages that ran; the caller 'gives up' (sets ``stop``) as res3 ends."""
    hooks = [model.backbone.bottom_up.res3.register_forward_hook(
        lambda *a: (log.append("res3"), stop.set()))]
    for name in ("res4", "res5"):
        hooks.append(getattr(model.backbone.bottom_up, name).register_forward_hook(
            lambda *a, name=name: log.append(name)))
    hooks.append(model.proposal_generator.register_forward_hook(lambda *a: log.append("rpn")))
    return hooks


def test_a_stopped_inference_ends_at_the_next_stage_and_the_next_one_is_whole(predictor):
    image = read_image(IMAGES / "small.jpg")
    expected = predictor(image)
    model = predictor.model
    log: list[str] = []
    stop = threading.Event()
    hooks = _stage_log(model, log, stop)
    try:
        with cancellable(stop), pytest.raises(Cancelled):
            predictor(image)
    finally:
        for hook in hooks:
            hook.remove()
    assert log == ["res3"]  # res4, the RPN and the heads never ran
    # the same predictor, on this thread, outside the block: a whole inference, same result
    again = predictor(image)
    assert np.array_equal(again.boxes, expected.boxes)
    assert np.array_equal(again.masks, expected.masks)


def test_a_stop_asked_on_another_thread_is_not_seen_here():
    elsewhere = threading.Event()
    elsewhere.set()
    done = []

    def other():
        with cancellable(elsewhere):
            try:
                check()
            except Cancelled:
                done.append("stopped")

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert done == ["stopped"]
    check()  # nothing asked this thread to stop: no Cancelled here


def test_a_batch_does_not_take_a_stop_for_a_bad_image(r50_checkpoint, tmp_path):
    # segmentBatch goes on past an image that fails (``except Exception``); a stop is not a
    # failure of that image: it ends the whole call, and nothing is reported as skipped.
    from pixellib.torchbackend.instance import instanceSegmentation

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("small.jpg", "wide.jpg"):
        (folder / name).write_bytes((IMAGES / name).read_bytes())
    ins = instanceSegmentation()
    ins.load_model(r50_checkpoint, detection_speed="rapid")
    stopped = threading.Event()
    stopped.set()
    with cancellable(stopped), pytest.raises(Cancelled):
        ins.segmentBatch(str(folder), output_folder_name=str(tmp_path / "out"))
    assert ins.batch_failures == []
    assert not list((tmp_path / "out").glob("*.jpg"))


def test_checks_work_on_a_torch_without_torch_compiler_is_compiling():
    """torch 2.1 and 2.2 (supported) have no torch.compiler.is_compiling: every inference
    failed with an AttributeError at the first check."""
    import subprocess
    import sys

    code = ("import torch.compiler\n"
            "del torch.compiler.is_compiling\n"
            "from pixellib.runtime.cancel import check\n"
            "check()\n"
            "print('checked')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "checked", out.stderr[-2000:]
