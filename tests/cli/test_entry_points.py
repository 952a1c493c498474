"""The installed ``pixellib`` command and ``python -m pixellib``, each run as a real process
that segments a photo with a synthetic checkpoint (``--model PATH``).

The other CLI tests call ``main()`` in-process; these check what a user runs: the console
script pip installs (pyproject's ``[project.scripts]``), the ``__main__`` module, their exit
status and the file they write.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "tests" / "data" / "images" / "small.jpg"


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "pixellib"
    if not script.is_file():
        found = shutil.which("pixellib")
        if found is None:
            pytest.skip("the pixellib console script is not installed (pip install -e .)")
        script = Path(found)
    return [str(script)]


ENTRY_POINTS = {"console script": _console_script,
                "python -m pixellib": lambda: [sys.executable, "-m", "pixellib"]}


@pytest.mark.slow
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_entry_point_segments_a_photo(entry, r50_checkpoint, tmp_path):
    photo = tmp_path / "photo.jpg"
    shutil.copyfile(PHOTO, photo)
    out = tmp_path / "out" / "annotated.png"
    # PYTHONPATH: the checkout under test, also where an older install is on the path.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIXELLIB_HOME": str(tmp_path / "home")}
    cmd = [*ENTRY_POINTS[entry](), "segment", str(photo), "-o", str(out),
           "--model", str(r50_checkpoint), "--speed", "rapid", "--boxes"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    found = re.match(r"1 image(s)?, (\d+) objects?", summary)
    assert found, summary
    written, source = cv2.imread(str(out)), cv2.imread(str(photo))
    assert written is not None and written.shape == source.shape
    # The synthetic model finds objects everywhere in rapid mode (the reference found 100).
    assert int(found.group(2)) > 0
    assert np.abs(written.astype(int) - source).max() > 50  # masks and boxes drawn
    assert sorted(p.name for p in out.parent.iterdir()) == ["annotated.png"]  # no temp left


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_entry_point_exit_status_for_a_missing_input(entry, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*ENTRY_POINTS[entry](), "segment", str(tmp_path / "nope.jpg")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("pixellib: error:")
    assert "nope.jpg" in done.stderr and "Traceback" not in done.stderr
