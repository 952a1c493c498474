"""Our backbone + FPN against the runtimes a user might pick instead, on the same weights.

    .venv/bin/python benchmarks/peers.py                  # every contender that is installed
    .venv/bin/python benchmarks/peers.py --quick          # smoke test: small input, 1 run

The ResNet-50 backbone + FPN of the synthetic checkpoint (seed 0) on ``street.jpg`` resized as
the model resizes it (800 px short side, padded to multiples of 32), fp32, ``--threads``
threads everywhere. Contenders, each skipped with a note when its package is missing:

* ``ours``: eager PyTorch, as ``Predictor`` runs it (channels-last, Winograd 3x3 where it pays);
* ``torch.compile``: inductor on the same module (``PIXELLIB_NO_WINOGRAD=1``: it compiles
  plain convolutions);
* ``ONNX Runtime``: the module exported with ``torch.onnx.export``, CPU provider,
  all graph optimisations;
* ``OpenVINO``: ``openvino.convert_model`` of the module, compiled for the CPU with an
  explicit ``INFERENCE_PRECISION_HINT=f32`` (it would otherwise pick bf16 where the CPU has it).

Runs alternate between contenders (round robin) after two warm-up calls each; the table
gives the median seconds, the ratio to ours (> 1: ours is faster) and the largest relative
difference of the five maps from ours (they must agree to ~1e-5). Peer runtimes are not
dependencies of pixellib; install them to measure them (``pip install onnxruntime onnx
onnxscript openvino``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import _report  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pixellib.checkpoint.synthetic import write_checkpoint  # noqa: E402
from pixellib.model import backbone  # noqa: E402
from pixellib.predictor import Predictor, resize_image  # noqa: E402

LEVELS = ("p2", "p3", "p4", "p5", "p6")
OURS = "ours (eager)"


class Maps(torch.nn.Module):
    """The backbone + FPN returning a tuple (exporters want tensors, not a dict)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        out = self.backbone(x)
        return tuple(out[k] for k in LEVELS)


def contenders(module, x, threads: int, workdir: Path) -> dict:
    found, skipped = {}, {}

    def ours():
        with torch.inference_mode():
            return [t.numpy() for t in module(x)]

    found[OURS] = ours

    plain = Maps(module.backbone).eval()
    with plain_ops():
        try:
            compiled = torch.compile(plain)
            with torch.inference_mode():
                compiled(x)

            def run_compiled():
                with plain_ops(), torch.inference_mode():  # what it was traced with
                    return [t.numpy() for t in compiled(x)]

            found["torch.compile (inductor)"] = run_compiled
        except Exception as exc:  # noqa: BLE001 - a contender that cannot run is reported
            skipped["torch.compile"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        dense = x.contiguous()
        try:
            import onnxruntime as ort

            path = workdir / "backbone_fpn.onnx"
            torch.onnx.export(plain, (dense,), str(path), input_names=["x"],
                              output_names=list(LEVELS), dynamo=True, external_data=False)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            feed = {"x": dense.numpy()}
            found[f"ONNX Runtime {ort.__version__}"] = lambda: session.run(None, feed)
        except ImportError as exc:
            skipped["ONNX Runtime"] = f"not installed ({exc.name})"
        except Exception as exc:  # noqa: BLE001
            skipped["ONNX Runtime"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        try:
            import openvino as ov

            model = ov.convert_model(plain, example_input=dense)
            compiled_ov = ov.Core().compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY"})
            request = compiled_ov.create_infer_request()
            array = dense.numpy()

            def run_ov():
                result = request.infer({0: array})
                return [result[out] for out in compiled_ov.outputs]

            found[f"OpenVINO {ov.__version__.split('-')[0]} (f32 hint)"] = run_ov
        except ImportError as exc:
            skipped["OpenVINO"] = f"not installed ({exc.name})"
        except Exception as exc:  # noqa: BLE001
            skipped["OpenVINO"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return found, skipped


@contextlib.contextmanager
def plain_ops():
    """The model as the exporters and inductor can take it, same maths: direct convolutions
    (``PIXELLIB_NO_WINOGRAD``), and two in-place fusions of ours that the converters do not
    know (``aten::_add_relu``; a 6-d view add for the FPN's upsampling) as plain ops."""
    saved = backbone.add_relu, backbone.add_upsampled, os.environ.get("PIXELLIB_NO_WINOGRAD")
    os.environ["PIXELLIB_NO_WINOGRAD"] = "1"
    backbone.add_relu = lambda a, b, out=None: F.relu(a + b)
    backbone.add_upsampled = _plain_add_upsampled
    try:
        yield
    finally:
        backbone.add_relu, backbone.add_upsampled = saved[:2]
        if saved[2] is None:
            os.environ.pop("PIXELLIB_NO_WINOGRAD", None)
        else:
            os.environ["PIXELLIB_NO_WINOGRAD"] = saved[2]


def _plain_add_upsampled(x, small):
    x += F.interpolate(small, scale_factor=2.0, mode="nearest")


def measure(runs: int = 7, threads: int = 2, quick: bool = False) -> dict:
    """Time every installed contender (round robin); ``_report.peers_table`` tabulates the
    figures."""
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    ckpt = Path(tempfile.gettempdir()) / "pixellib_peers_resnet50_seed0.pkl"
    if not ckpt.exists():
        write_checkpoint(ckpt, "resnet50", 0)
    predictor = Predictor(ckpt)
    image = cv2.imread(str(ROOT / "tests" / "data" / "images" / "street.jpg"))
    short, long = (320, 480) if quick else (800, 1333)
    runs = 1 if quick else runs
    resized = resize_image(image, short, long)
    x = predictor.model.preprocess(
        torch.from_numpy(resized.transpose(2, 0, 1).astype(np.float32)))
    module = Maps(predictor.model.backbone).eval()
    with tempfile.TemporaryDirectory() as tmp:
        found, skipped = contenders(module, x, threads, Path(tmp))
        reference = found[OURS]()
        diffs, times = {}, {name: [] for name in found}
        for name, fn in found.items():
            fn()  # second warm-up (the first was the build/compile)
            out = fn()
            diffs[name] = max(float(np.abs(np.asarray(a) - b).max() / (np.abs(b).max() or 1))
                              for a, b in zip(out, reference))
        for _ in range(runs):
            for name, fn in found.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {"input": list(x.shape[-2:]), "threads": threads, "runs": runs,
            "torch": torch.__version__,
            "contenders": [{"name": name, "seconds": times[name], "max_rel_diff": diffs[name]}
                           for name in found],
            "skipped": skipped}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="a 320 px input, 1 run")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    result = measure(args.runs, args.threads, args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"backbone + FPN, ResNet-50, input {tuple(result['input'])}, fp32, {args.threads} "
          f"threads, median of {result['runs']} runs (torch {result['torch']})\n")
    print("\n".join(_report.peers_table(result)))


if __name__ == "__main__":
    main()
