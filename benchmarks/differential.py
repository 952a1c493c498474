"""Differential test: this project against the live PixelLib 0.7.1 on many real photos.

New synthetic checkpoints (seeds other than the golden 0 and 1, both architectures), every
photo x speed mode at a low confidence (many detections, the 100-detection cap, many NMS
near-ties), each case compared under the golden rule of ``tests/golden.py``. Our side runs
two ways: with torchvision's compiled NMS / RoIAlign kernels active (our code in the
reference interpreter, the repository on ``PYTHONPATH``) and with our plain-torch kernels
(this interpreter, ``PIXELLIB_NO_TORCHVISION=1``). Writes ``docs/fidelity.md``.

    .venv/bin/python benchmarks/differential.py                       # the full run
    .venv/bin/python benchmarks/differential.py --images street.jpg,chelsea.png --modes fast

Workers are ``_worker.py`` processes (task ``model``), one per implementation, checkpoint and
mode, driven through ``bench.Worker``; the comparison is ``_parity.compare``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import _parity  # noqa: E402
from bench import Worker, WorkerError  # noqa: E402

GOLDEN_PHOTOS = ("street.jpg", "small.jpg", "small_gray.png", "wide.jpg", "car_rgba.png")
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                  "motorcycle_left.png", "motorcycle_right.png", "hubble_deep_field.jpg",
                  "camera.png", "coins.png")
MODES = ("default", "fast", "rapid")
ARCHS = {"r50": ("resnet50", "resnet50"), "x101": ("resnext101_32x8d", "resnet101")}
DEFAULT_MODELS = "r50:2,r50:3,x101:4"
WAYS = ("torchvision", "plain")
DEFAULT_REFERENCE = "/root/.cache/pixellib-reference/bin/python"


def photo_paths(names: list[str], folder: Path) -> list[Path]:
    """Copy the chosen photos into ``folder`` (byte for byte: both sides read them with
    ``cv2.imread``); golden photos from tests/data/images, the rest from scikit-image."""
    import skimage

    sk = Path(skimage.__file__).parent / "data"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        src = ROOT / "tests" / "data" / "images" / name
        if not src.exists():
            src = sk / name
        if not src.exists():
            raise SystemExit(f"photo {name!r} is neither in tests/data/images nor in {sk}")
        dst = folder / name
        if not dst.exists():
            shutil.copyfile(src, dst)
        out.append(dst)
    return out


def checkpoint(model: str, seed: int, folder: Path) -> Path:
    from pixellib.checkpoint.synthetic import write_checkpoint

    arch = ARCHS[model][0]
    path = folder / f"pointrend_{arch}_seed{seed}.pkl"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_checkpoint(path, arch, seed)
    return path


def worker_env(way: str, threads: int) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    env.pop("PIXELLIB_NO_TORCHVISION", None)
    if way == "ref":
        env.pop("PYTHONPATH", None)  # `pixellib` there must be PixelLib 0.7.1
    else:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        if way == "plain":
            env["PIXELLIB_NO_TORCHVISION"] = "1"
    return env


def run_outputs(way: str, python: str, ckpt: Path, backbone: str, mode: str, photos, args,
                run_dir: Path, key: str) -> Path:
    """One worker: every photo once; returns the folder of saved ``<stem>.npz`` outputs."""
    out = run_dir / "outputs" / key / way
    spec = {"key": f"{key}/{way}", "impl": "ref" if way == "ref" else "ours", "task": "model",
            "mode": mode, "confidence": args.confidence, "images": [str(p) for p in photos],
            "threads": args.threads, "device": "cpu", "warmup": 0, "count_flops": False,
            "autocast": None, "save_outputs": str(out), "checkpoint": str(ckpt),
            "backbone": backbone}
    worker = Worker(python, spec, worker_env(way, args.threads), run_dir)
    try:
        msg = worker.ask()
        if msg.get("event") != "ready":
            raise WorkerError(f"{key}/{way}: {msg}")
        worker.ask("run")
        worker.ask("finish")
    finally:
        worker.close()
    return out


def earlier_reference(run_dirs: list[str], key: str, stems: list[str]) -> Path | None:
    """The folder of an earlier run's reference outputs for ``key`` holding every photo."""
    for run_dir in run_dirs:
        folder = Path(run_dir) / "outputs" / key / "ref"
        if all((folder / f"{stem}.npz").is_file() for stem in stems):
            return folder
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", default=os.environ.get("PIXELLIB_REFERENCE_PYTHON",
                                                         DEFAULT_REFERENCE))
    p.add_argument("--python", default=sys.executable, help="interpreter for the plain way")
    p.add_argument("--models", default=DEFAULT_MODELS,
                   help=f"arch:seed list (default {DEFAULT_MODELS}; the golden seeds are 0, 1)")
    p.add_argument("--images", default=",".join(GOLDEN_PHOTOS + SKIMAGE_PHOTOS))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--ways", default=",".join(WAYS), help="torchvision,plain")
    p.add_argument("--confidence", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default=str(ROOT / "bench_out" / "differential"))
    p.add_argument("--out", default=str(ROOT / "docs" / "fidelity.md"),
                   help="report (markdown); 'none' prints only")
    p.add_argument("--reuse-reference", metavar="RUN_DIR", action="append", default=[],
                   help="take the reference's outputs from an earlier run's folder where it "
                        "has them for a checkpoint and mode (PixelLib's side does not change "
                        "with our code); repeatable")
    p.add_argument("--report-from", metavar="RESULTS.json",
                   help="only write the report from a (possibly partial) run's results.json")
    p.add_argument("--explain", action="store_true",
                   help="with --report-from: look into each failing mask (near_ties)")
    args = p.parse_args(argv)
    if args.report_from:
        results = json.loads(Path(args.report_from).read_text())
        names = results["args"]["images"].split(",")
        if args.explain:
            explain_failures(results, Path(args.report_from).parent)
        return _write_report(results, [Path(n) for n in names], args.out, args.report_from)

    work = Path(args.workdir)
    run_dir = work / time.strftime("run-%Y%m%d-%H%M%S")
    photos = photo_paths(args.images.split(","), work / "photos")
    stems = [ph.stem for ph in photos]
    ways = [w for w in args.ways.split(",") if w]
    started = time.time()
    results = {"args": vars(args), "started": time.strftime("%Y-%m-%d %H:%M UTC",
                                                             time.gmtime()), "cases": []}
    json_path = run_dir / "results.json"
    run_dir.mkdir(parents=True, exist_ok=True)
    for item in args.models.split(","):
        model, seed = item.split(":")
        ckpt = checkpoint(model, int(seed), work / "checkpoints")
        for mode in args.modes.split(","):
            key = f"{model}_seed{seed}/{mode}"
            ref = earlier_reference(args.reuse_reference, key, stems)
            if ref is None:
                ref = run_outputs("ref", args.reference, ckpt, ARCHS[model][1], mode, photos,
                                  args, run_dir, key)
            else:
                print(f"{key}: the reference's outputs of {ref}", flush=True)
            results.setdefault("reference_outputs", {})[key] = str(ref)
            for way in ways:
                python = args.reference if way == "torchvision" else args.python
                ours = run_outputs(way, python, ckpt, ARCHS[model][1], mode, photos, args,
                                   run_dir, key)
                for stem in stems:
                    row = _parity.summarize(_parity.compare(_parity.load(ref / f"{stem}.npz"),
                                                            _parity.load(ours / f"{stem}.npz")))
                    row.update(model=model, seed=int(seed), mode=mode, photo=stem, way=way)
                    results["cases"].append(row)
                    print(f"{key:22s} {stem:20s} {way:11s} {'ok' if row['ok'] else 'FAIL':4s} "
                          f"ref {row['expected']:3d} ours {row['actual']:3d} "
                          f"unmatched {row['unmatched']} worst IoU {row['worst_iou']}",
                          flush=True)
                results["elapsed_s"] = time.time() - started
                json_path.write_text(json.dumps(results))  # partial results survive a stop
    results["finished"] = True
    json_path.write_text(json.dumps(results))
    return _write_report(results, photos, args.out, json_path)


def explain_failures(results: dict, run_dir: Path) -> None:
    """For each failing case of the plain way, run our model again in this process, keep the
    pre-paste probability maps, and record for every pair below the golden mask IoU what our
    probability is at the pixels that differ from the reference, and what it becomes when the
    map is pasted with the reference's box (``case["near_ties"]``). A float near-tie shows as
    probabilities within a hair of 0.5 that the reference's box moves to the other side."""
    import numpy as np
    import torch

    import pixellib.model.detector as detector
    from pixellib.model import ops
    from pixellib.predictor import Predictor

    args = results["args"]
    work = Path(args["workdir"])
    golden = _parity.golden_module()
    captured = {}
    original_postprocess = detector.postprocess

    def keep_maps(boxes, scores, classes, masks, *rest):
        out = original_postprocess(boxes, scores, classes, masks, *rest)
        captured.update(maps=masks.detach().float(), boxes=out.boxes)
        return out

    def sample(prob_map, box, pixels):
        ys = torch.tensor([p[0] for p in pixels], dtype=torch.float32) + 0.5
        xs = torch.tensor([p[1] for p in pixels], dtype=torch.float32) + 0.5
        grid = torch.stack(ops.box_grid(torch.as_tensor(box, dtype=torch.float32)[None], xs, ys),
                           dim=-1)[None]
        return torch.nn.functional.grid_sample(prob_map[None, None], grid,
                                               align_corners=False).flatten().tolist()

    detector.postprocess = keep_maps
    try:
        for case in results["cases"]:
            if case["ok"] or case["way"] != "plain":
                continue
            key = f"{case['model']}_seed{case['seed']}/{case['mode']}"
            ref_dir = Path(results.get("reference_outputs", {}).get(
                key, run_dir / "outputs" / key / "ref"))
            ref = _parity.load(ref_dir / f"{case['photo']}.npz")
            ckpt = checkpoint(case["model"], case["seed"], work / "checkpoints")
            photo = next((work / "photos").glob(case["photo"] + ".*"))
            predictor = Predictor(str(ckpt), speed=None if case["mode"] == "default"
                                  else case["mode"], confidence=args["confidence"])
            det = predictor(str(photo))
            maps, boxes, masks = captured["maps"], captured["boxes"].numpy(), det.masks
            assert len(maps) == len(masks), "the Predictor dropped detections after pasting"
            ties = []
            ious = golden.box_iou(ref["boxes"], boxes)
            for g in range(len(ref["boxes"])):
                same = np.flatnonzero(det.class_ids == ref["classes"][g])
                if not len(same):
                    continue
                o = int(same[np.argmax(ious[g, same])])
                if golden.mask_iou(ref["masks"][g], masks[o]) >= 0.95:
                    continue
                differing = np.argwhere(ref["masks"][g] != masks[o]).tolist()
                ours_p = sample(maps[o], boxes[o], differing)
                with_ref = sample(maps[o], ref["boxes"][g], differing)
                repasted = ops.paste_masks(maps[o][None], torch.as_tensor(ref["boxes"][g])[None],
                                           ref["masks"].shape[1:])[0].numpy()
                ties.append({
                    "class": int(ref["classes"][g]),
                    "box_size": "x".join(f"{v:.2f}" for v in (ref["boxes"][g][2:] -
                                                              ref["boxes"][g][:2])),
                    "ref_pixels": int(ref["masks"][g].sum()), "our_pixels": int(masks[o].sum()),
                    "box_diff": float(np.abs(ref["boxes"][g] - boxes[o]).max()),
                    "differing": len(differing),
                    "probabilities": ", ".join(f"{v:.5f}" for v in ours_p),
                    "with_ref_box": ", ".join(f"{v:.5f}" for v in with_ref),
                    "ref_box_equal": bool((repasted == ref["masks"][g]).all())})
            case["near_ties"] = ties
            print(f"{key} {case['photo']}: {ties}", flush=True)
    finally:
        detector.postprocess = original_postprocess


def _write_report(results: dict, photos, out: str, raw) -> int:
    text = format_report(results, photos)
    print(text)
    if out != "none":
        from pixellib.media.files import write_text

        write_text(out, text)
        print(f"written: {out} (raw: {raw})", file=sys.stderr)
    return 0 if all(c["ok"] for c in results["cases"]) else 1


def format_report(results: dict, photos) -> str:
    cases = results["cases"]
    a = results["args"]
    lines = ["# Fidelity: differential test against PixelLib 0.7.1", "",
             f"Run {results['started']}, {results.get('elapsed_s', 0) / 60:.0f} min, "
             f"{'complete' if results.get('finished') else 'PARTIAL (stopped early)'}. "
             "Command: `python benchmarks/differential.py` "
             f"(`--models {a['models']} --modes {a['modes']} --confidence {a['confidence']} "
             f"--images {a['images']}`).",
             "", "Every case is one photo x checkpoint x speed mode, compared with the live "
             "reference under the golden rule (`tests/golden.py`).", "",
             "| our kernels | cases | pass | detections matched | mean mask IoU | "
             "worst mask IoU |", "|---|---|---|---|---|---|"]
    for way in dict.fromkeys(c["way"] for c in cases):
        rows = [c for c in cases if c["way"] == way]
        ious = [v for c in rows for v in c["ious"]]
        expected = sum(c["expected"] for c in rows)
        label = ("torchvision's compiled ops" if way == "torchvision"
                 else "plain torch (`PIXELLIB_NO_TORCHVISION=1`)")
        lines.append(
            f"| {label} | {len(rows)} | {sum(c['ok'] for c in rows)} "
            f"({100 * sum(c['ok'] for c in rows) / max(len(rows), 1):.0f} %) | "
            f"{len(ious)} / {expected} | "
            f"{(sum(ious) / len(ious)) if ious else float('nan'):.4f} | "
            f"{min(ious) if ious else float('nan'):.4f} |")
    models = sorted({(c["model"], c["seed"]) for c in cases})
    lines += ["", "Checkpoints (synthetic, `pixellib.checkpoint.synthetic`): "
              + ", ".join(f"{m} seed {s}" for m, s in models) + ".",
              f"Photos ({len(photos)}): " + ", ".join(ph.name for ph in photos)
              + " (tests/data/images and scikit-image's `skimage/data`).",
              f"Confidence {a['confidence']}; modes {a['modes']}; {a['threads']} threads, CPU."]
    planned = 1
    for key in ("models", "modes", "images", "ways"):
        planned *= len([v for v in a[key].split(",") if v])
    lines.append(f"Cases compared: {len(cases)} of the {planned} this command plans "
                 "(photos x checkpoints x modes x our two ways).")
    capped = sum(c["expected"] == 100 for c in cases)
    lines.append(f"Cases at the 100-detection cap: {capped} of {len(cases)}.")
    failed = [c for c in cases if not c["ok"]]
    if failed:
        lines += ["", "## Failing cases", "",
                  "| checkpoint | mode | photo | kernels | ref | ours | unmatched | worst IoU "
                  "| max score diff |", "|---|---|---|---|---|---|---|---|---|"]
        for c in failed:
            lines.append(f"| {c['model']} seed {c['seed']} | {c['mode']} | {c['photo']} | "
                         f"{c['way']} | {c['expected']} | {c['actual']} | {c['unmatched']} | "
                         f"{c['worst_iou']} | {c['max_score_diff']} |")
        explained = [c for c in failed if c.get("near_ties")]
        if explained:
            lines += ["", "What differs in the failing masks (`--explain`: our mask head's "
                      "probabilities re-sampled at the differing pixels, and our probability "
                      "map pasted with the reference's box):", ""]
            for c in explained:
                for t in c["near_ties"]:
                    lines.append(
                        f"- {c['model']} seed {c['seed']} {c['mode']} {c['photo']} "
                        f"({c['way']}): detection of class {t['class']}, box "
                        f"{t['box_size']} px, masks of {t['ref_pixels']} (ref) and "
                        f"{t['our_pixels']} (ours) pixels, box corners differing by at most "
                        f"{t['box_diff']:.1e} px; at the {t['differing']} differing pixels our "
                        f"probability is {t['probabilities']} (threshold 0.5); pasted with the "
                        f"reference's box it is {t['with_ref_box']}, and the mask "
                        f"{'equals' if t['ref_box_equal'] else 'still differs from'} the "
                        "reference's.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
