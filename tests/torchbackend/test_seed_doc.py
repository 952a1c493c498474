"""Every Python block of PixelLib's tutorial (tests/data/seed_doc.md) runs verbatim, in order,
and makes its files.

``tests/data/seed_doc.md`` is a copy of PixelLib's "Instance Segmentation of Images in
Pytorch" page, the project's contract. Its blocks share one namespace (later ones use ``ins``
and ``results`` from earlier ones) and run in a folder holding the files they name:
synthetic R50 / X101 checkpoints under PixelLib's file names, golden photos as ``image.jpg``,
``sample.jpg`` and ``inputfolder/``. One test per block, so a failure names the block and its
line in the document; selecting a single block (``-k``) first runs the blocks before it.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import cv2
import pytest

from doc_blocks import python_blocks

DATA = Path(__file__).parents[1] / "data"
DOC = DATA / "seed_doc.md"
PHOTOS = {"image.jpg": "street.jpg", "sample.jpg": "small.jpg"}
INPUT_FOLDER = {"test1.jpg": "small.jpg", "test2.jpg": "wide.jpg"}  # both have detections
RESULT_KEYS = ["boxes", "class_ids", "class_names", "object_counts", "scores", "masks",
               "extracted_objects"]


BLOCKS = python_blocks(DOC.read_text(encoding="utf-8"))


def promised_files(code: str) -> list[str]:
    """Paths (relative to the working folder) that a block says it writes."""
    files = re.findall(r'output_image_name\s*=\s*"([^"]+)"', code)
    extracting = bool(re.search(r"extract_segmented_objects\s*=\s*True", code)
                      and re.search(r"save_extracted_objects\s*=\s*True", code))
    prefix = ("object_extract" if re.search(r"extract_from_box\s*=\s*True", code)
              else "segmented_object")
    folder = re.search(r'output_folder_name\s*=\s*"([^"]+)"', code)
    if folder:
        files += [f"{folder[1]}/{name}" for name in INPUT_FOLDER]
        if extracting:
            files += [f"{folder[1]}/{Path(n).stem}_extracts/{prefix}_1.jpg" for n in INPUT_FOLDER]
    elif extracting:
        files.append(f"{prefix}_1.jpg")
    return files


def _clear_outputs(root: Path, code: str) -> None:
    """Remove what the block will write, so that the checks see this block's files."""
    for rel in promised_files(code):
        (root / rel).unlink(missing_ok=True)
    folder = re.search(r'output_folder_name\s*=\s*"([^"]+)"', code)
    if folder:
        shutil.rmtree(root / folder[1], ignore_errors=True)
    for old in [*root.glob("segmented_object_*.jpg"), *root.glob("object_extract_*.jpg")]:
        old.unlink()


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, r50_checkpoint, x101_checkpoint):
    root = tmp_path_factory.mktemp("seed_doc")
    _link_or_copy(Path(r50_checkpoint), root / "pointrend_resnet50.pkl")
    _link_or_copy(Path(x101_checkpoint), root / "pointrend_resnet101.pkl")
    for name, photo in PHOTOS.items():
        shutil.copyfile(DATA / "images" / photo, root / name)
    (root / "inputfolder").mkdir()
    for name, photo in INPUT_FOLDER.items():
        shutil.copyfile(DATA / "images" / photo, root / "inputfolder" / name)
    return {"root": root, "namespace": {"__name__": "__seed_doc__"}, "next": 0}


def _run(workspace: dict, index: int) -> None:
    line, code = BLOCKS[index]
    workspace["next"] = index + 1  # later blocks go on even if this one fails
    _clear_outputs(workspace["root"], code)
    exec(compile(code, f"seed_doc.md (block {index}, line {line})", "exec"),
         workspace["namespace"])


def test_document_has_the_expected_blocks():
    assert len(BLOCKS) == 32
    assert sum("segmentBatch" in code for _, code in BLOCKS) == 6


@pytest.mark.slow
@pytest.mark.parametrize(
    "index", range(len(BLOCKS)), ids=[f"block{i:02d}-line{line}" for i, (line, _) in
                                      enumerate(BLOCKS)],
)
def test_block_runs_verbatim(index, workspace, monkeypatch):
    root = workspace["root"]
    monkeypatch.chdir(root)
    while workspace["next"] < index:  # a selected block needs the ones before it
        earlier = workspace["next"]
        try:
            _run(workspace, earlier)
        except Exception as exc:  # noqa: BLE001 - reported as this test's failure
            pytest.fail(f"block {earlier} (needed before block {index}) failed: {exc!r}")

    line, code = BLOCKS[index]
    _run(workspace, index)

    missing = [rel for rel in promised_files(code) if not (root / rel).is_file()]
    assert not missing, f"block {index} (line {line}) did not write {missing}"
    for rel in promised_files(code):
        assert cv2.imread(str(root / rel)) is not None, f"{rel} is not a readable image"
    if "results, output =" in code:
        results, output = workspace["namespace"]["results"], workspace["namespace"]["output"]
        assert list(results) == RESULT_KEYS
        assert output.ndim == 3 and output.dtype == "uint8"
