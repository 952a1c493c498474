"""One measurement in a fresh process, for ``bench.py``: ours or PixelLib 0.7.1's.

Run as ``python _worker.py SPEC.json`` with either environment's interpreter. It imports only
the standard library, numpy, OpenCV and torch at the top, then the implementation the spec
names (``pixellib`` resolves to this project's package or to PixelLib 0.7.1, depending on the
interpreter and ``PYTHONPATH`` the parent gives it).

Protocol: one JSON object per line on the original stdout (the worker sends anything the
libraries print to stderr instead). After loading and warming up it sends ``{"event":
"ready"}``; then each ``run`` line from the parent gets one repetition's timings back, and
``finish`` gets the peak memory and the task's extras (FLOPs, saved outputs) before it exits.
The parent alternates two such workers, ours and the reference, repetition by repetition.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

# --------------------------------------------------------------------------- memory


def _status_kb(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) if m else None


def peak_rss_kb() -> int:
    """Peak resident set size of this process (since start or the last reset), in KiB."""
    hwm = _status_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_rss() -> bool:
    """Reset the high-water mark to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- implementations


def _speed(mode: str) -> str | None:
    return None if mode == "default" else mode


def _pack(boxes, scores, classes, masks) -> dict:
    masks = np.asarray(masks, bool)
    return {
        "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
        "scores": np.asarray(scores, np.float32).reshape(-1),
        "classes": np.asarray(classes, np.int64).reshape(-1),
        "masks": np.packbits(masks.reshape(-1)),
        "mask_shape": np.asarray(masks.shape, np.int64),
    }


class ScriptApi:
    """PixelLib's script API, the same calls on either implementation's ``self.ins``."""

    def segment_image(self, path: str, out: str) -> int:
        results, _ = self.ins.segmentImage(path, show_bboxes=True, output_image_name=out)
        return len(results["class_ids"])

    def segment_batch(self, folder: str, out_dir: str) -> int:
        results, _ = self.ins.segmentBatch(folder, show_bboxes=True, output_folder_name=out_dir)
        return len(results)

    def process_video(self, path: str, out: str, fps: float) -> None:
        # PixelLib opens its writer only when frames_per_second is given (its tutorials
        # always pass it): the clip's own rate.
        self.ins.process_video(path, show_bboxes=True, output_video_name=out,
                               frames_per_second=fps)


class Ours(ScriptApi):
    """This project: ``instanceSegmentation`` for the API, ``Predictor`` for the model."""

    name = "ours"

    def __init__(self, spec: dict):
        self.device = spec["device"]
        if spec["task"] == "model":
            from pixellib.predictor import Predictor

            kwargs = {"speed": _speed(spec["mode"]), "confidence": spec["confidence"],
                      "device": self.device, "backbone": spec["backbone"],
                      "heap_reuse": True}  # as the CLI and instanceSegmentation run it
            import inspect

            if spec.get("autocast"):
                if "precision" not in inspect.signature(Predictor).parameters:
                    raise Unsupported("pixellib.predictor.Predictor has no `precision` option")
                kwargs["precision"] = spec["autocast"]
            if "heap_reuse" not in inspect.signature(Predictor).parameters:
                kwargs.pop("heap_reuse")  # older versions turned it on for every CPU Predictor
            self.predictor = Predictor(spec["checkpoint"], **kwargs)
        else:
            from pixellib.torchbackend.instance import instanceSegmentation

            self.ins = instanceSegmentation()
            self.ins.load_model(spec["checkpoint"], confidence=spec["confidence"],
                                detection_speed=_speed(spec["mode"]),
                                network_backbone=spec["backbone"], device=self.device)

    def model(self, image: np.ndarray):
        d = self.predictor(image)
        return d.boxes, d.scores, d.class_ids, d.masks


class Reference(ScriptApi):
    """PixelLib 0.7.1: its ``instanceSegmentation``; the model alone is its detectron2
    ``DefaultPredictor.segment(bgr_image)`` (resize, forward, paste masks), which
    ``segmentImage`` calls as ``ins.predictor.segment(image)``."""

    name = "ref"

    def __init__(self, spec: dict):
        if spec.get("autocast"):
            raise Unsupported("PixelLib 0.7.1 has no reduced-precision option")
        from pixellib.torchbackend.instance import instanceSegmentation

        self.ins = instanceSegmentation()
        self.ins.load_model(spec["checkpoint"], confidence=spec["confidence"],
                            detection_speed=_speed(spec["mode"]),
                            network_backbone=spec["backbone"])

    def model(self, image: np.ndarray):
        inst = self.ins.predictor.segment(image)["instances"]
        return (inst.pred_boxes.tensor.cpu().numpy(), inst.scores.cpu().numpy(),
                inst.pred_classes.cpu().numpy(), inst.pred_masks.cpu().numpy())


class Unsupported(Exception):
    """The implementation cannot do what the spec asks (reported, not a failure)."""


# --------------------------------------------------------------------------- tasks


class Task:
    """Base: ``run()`` returns one repetition's ``{"times": [...], "counts": [...]}``."""

    def __init__(self, spec: dict, impl=None):
        self.spec = spec
        self.impl = impl
        self.cuda = spec["device"].startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def timed(self, fn, *args):
        self.sync()
        t0 = time.perf_counter()
        value = fn(*args)
        self.sync()
        return time.perf_counter() - t0, value

    def warmup(self) -> None:
        pass

    def finish(self) -> dict:
        return {}


class ImageTask(Task):
    """End to end: ``segmentImage(path, show_bboxes=True, output_image_name=...)``."""

    def __init__(self, spec, impl):
        super().__init__(spec, impl)
        self.out = str(Path(spec["out_dir"]) / "output.jpg")

    def warmup(self):
        for path in self.spec["images"]:
            self.impl.segment_image(path, self.out)

    def run(self):
        times, counts = [], []
        for path in self.spec["images"]:
            t, n = self.timed(self.impl.segment_image, path, self.out)
            times.append(t)
            counts.append(n)
        return {"times": times, "counts": counts}


class ModelTask(Task):
    """The model alone: BGR uint8 array in, detections (numpy) out."""

    def __init__(self, spec, impl):
        super().__init__(spec, impl)
        self.images = []
        for path in spec["images"]:
            image = cv2.imread(path)
            if image is None:
                raise FileNotFoundError(path)
            self.images.append(image)
        self.last: list = []

    def warmup(self):
        for image in self.images:
            self.impl.model(image)

    def run(self):
        times, counts, outputs = [], [], []
        for image in self.images:
            t, out = self.timed(self.impl.model, image)
            times.append(t)
            counts.append(len(out[1]))
            outputs.append(out)
        self.last = outputs
        return {"times": times, "counts": counts}

    def finish(self):
        extras = {}
        save = self.spec.get("save_outputs")
        if save and self.last:
            Path(save).mkdir(parents=True, exist_ok=True)
            for path, out in zip(self.spec["images"], self.last):
                np.savez(Path(save) / f"{Path(path).stem}.npz", **_pack(*out))
            extras["outputs"] = save
        if self.spec.get("count_flops"):
            extras["flops"] = [self.count_flops(image) for image in self.images]
        return extras

    def count_flops(self, image) -> dict:
        """``total``: the model's arithmetic with direct convolutions (what PixelLib runs);
        ``executed``: what ran, smaller where our 3x3 convolutions use Winograd."""
        from torch.utils.flop_counter import FlopCounterMode

        def count():
            counter = FlopCounterMode(display=False)
            with counter:
                self.impl.model(image)
            by_op = counter.get_flop_counts().get("Global", {})
            return int(counter.get_total_flops()), {str(op): int(n) for op, n in by_op.items()}

        executed, by_op = count()
        try:
            import pixellib.model.winograd  # noqa: F401  (ours only)
        except ImportError:
            return {"total": executed, "executed": executed, "by_op": by_op}
        saved = os.environ.get("PIXELLIB_NO_WINOGRAD")
        os.environ["PIXELLIB_NO_WINOGRAD"] = "1"
        try:
            total, by_op = count()
        finally:
            if saved is None:
                del os.environ["PIXELLIB_NO_WINOGRAD"]
            else:
                os.environ["PIXELLIB_NO_WINOGRAD"] = saved
        return {"total": total, "executed": executed, "by_op": by_op}


class BatchTask(Task):
    """``segmentBatch(folder, show_bboxes=True, output_folder_name=...)`` over the folder."""

    def __init__(self, spec, impl):
        super().__init__(spec, impl)
        self.out_dir = str(Path(spec["out_dir"]) / "batch_out")

    def warmup(self):
        # One image through the whole API: first-call costs, not a whole batch.
        first = sorted(Path(self.spec["folder"]).iterdir())[0]
        self.impl.segment_image(str(first), str(Path(self.spec["out_dir"]) / "warm.jpg"))

    def run(self):
        t, n = self.timed(self.impl.segment_batch, self.spec["folder"], self.out_dir)
        return {"times": [t], "counts": [n]}


class VideoTask(Task):
    """``process_video(clip, show_bboxes=True, output_video_name=...)`` over the whole clip;
    counts are its frames."""

    def __init__(self, spec, impl):
        super().__init__(spec, impl)
        self.out = str(Path(spec["out_dir"]) / "video_out.mp4")
        capture = cv2.VideoCapture(spec["video"])
        self.frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        capture.release()

    def warmup(self):
        # One frame through the whole API: first-call costs, not a whole clip.
        capture = cv2.VideoCapture(self.spec["video"])
        ok, frame = capture.read()
        capture.release()
        if not ok:
            raise FileNotFoundError(self.spec["video"])
        still = str(Path(self.spec["out_dir"]) / "warm.jpg")
        cv2.imwrite(still, frame)
        self.impl.segment_image(still, str(Path(self.spec["out_dir"]) / "warm_out.jpg"))

    def run(self):
        t, _ = self.timed(self.impl.process_video, self.spec["video"], self.out, self.fps)
        return {"times": [t], "counts": [self.frames]}


class MatmulTask(Task):
    """fp32 ``n x n @ n x n``: the machine's practical throughput (2 n^3 FLOP per product)."""

    def __init__(self, spec, impl=None):
        super().__init__(spec, impl)
        n = spec["matmul_n"]
        g = torch.Generator().manual_seed(0)
        self.a = torch.randn(n, n, generator=g).to(spec["device"])
        self.b = torch.randn(n, n, generator=g).to(spec["device"])
        self.c = torch.empty(n, n, device=spec["device"])

    def warmup(self):
        torch.mm(self.a, self.b, out=self.c)

    def run(self):
        t, _ = self.timed(lambda: torch.mm(self.a, self.b, out=self.c))
        n = self.spec["matmul_n"]
        return {"times": [t], "counts": [2 * n**3]}


TASKS = {"image": ImageTask, "model": ModelTask, "batch": BatchTask, "video": VideoTask,
         "matmul": MatmulTask}


# --------------------------------------------------------------------------- main


def versions() -> dict:
    info = {"python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "cv2": cv2.__version__,
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}
    with contextlib.suppress(Exception):
        from importlib import metadata

        import pixellib

        info["pixellib"] = getattr(pixellib, "__version__", None) or metadata.version("pixellib")
        info["pixellib_path"] = str(Path(pixellib.__file__).parent)
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    return info


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    # Keep the protocol channel for ourselves; everything else printed goes to stderr.
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(**msg):
        channel.write(json.dumps(msg) + "\n")

    torch.set_num_threads(spec["threads"])
    cv2.setNumThreads(spec["threads"])
    if spec["device"].startswith("cuda"):
        # fp32 means fp32: TF32 would move results beyond the golden rule.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    Path(spec["out_dir"]).mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        impl = None
        if spec["task"] != "matmul":
            impl = (Ours if spec["impl"] == "ours" else Reference)(spec)
        task = TASKS[spec["task"]](spec, impl)
        load_s = time.perf_counter() - t0
        load_peak = peak_rss_kb()
        resettable = reset_peak_rss()
        for _ in range(spec["warmup"]):
            task.warmup()
    except Unsupported as exc:
        send(event="unsupported", reason=str(exc))
        return
    send(event="ready", load_s=load_s, versions=versions())
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            send(event="rep", **task.run())
        elif cmd == "finish":
            inference_peak = peak_rss_kb()
            msg = {"event": "done", "load_peak_kb": load_peak,
                   "peak_kb": max(load_peak, inference_peak),
                   "after_load_peak_kb": inference_peak if resettable else None,
                   "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
            if spec["device"].startswith("cuda"):
                msg["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
            # Extras (FLOP counting, saving outputs) come after the memory reading.
            msg.update(task.finish())
            send(**msg)
            return
        else:
            raise ValueError(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main()
