"""Copy hard cases of a differential run (PixelLib 0.7.1's outputs) into tests/data/fidelity.

    python tools/copy_fidelity_cases.py bench_out/differential/run-... r50_seed2/rapid/small.jpg ...

Each case is ``<model>_seed<seed>/<mode>/<photo file>``; the photo must be in
tests/data/images. The reference's output is stored compressed with what the test needs to
rerun it: architecture, seed, mode, confidence and photo (``tests/test_fidelity_cases.py``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "fidelity"


def main(run_dir: str, *cases: str) -> int:
    run = Path(run_dir)
    confidence = json.loads((run / "results.json").read_text())["args"]["confidence"]
    OUT.mkdir(parents=True, exist_ok=True)
    for case in cases:
        key, mode, photo = case.split("/")
        model, seed = key.split("_seed")
        if not (ROOT / "tests" / "data" / "images" / photo).exists():
            raise SystemExit(f"{photo} is not in tests/data/images")
        with np.load(run / "outputs" / key / mode / "ref" / f"{Path(photo).stem}.npz") as z:
            data = {k: z[k] for k in ("boxes", "scores", "classes", "masks", "mask_shape")}
        data.update(model=np.array(model), seed=np.int64(seed), mode=np.array(mode),
                    confidence=np.float64(confidence), photo=np.array(photo))
        dst = OUT / f"{key}.{Path(photo).stem}.{mode}.npz"
        np.savez_compressed(dst, **data)
        print(f"{dst.relative_to(ROOT)}: {len(data['scores'])} detections, "
              f"{dst.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
