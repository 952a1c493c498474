"""Segment millions of images on a Ray cluster (the ``pixellib[ray]`` extra).

* :class:`SegmentBatch`: the callable class for ``Dataset.map_batches``;
* :func:`segment_to_parquet`: inputs in, result shards and a :class:`Summary` out;
* :func:`segment_dataset`: the same on a ``ray.data.Dataset`` you built;
* :func:`read_rows`, :func:`row_detections`: results back as a table / ``Detections``.

Inside this package ``import ray`` is Ray itself (absolute imports). See docs/scale-out.md.
"""
from __future__ import annotations

from .job import (
    OutputCheckError,
    RayJobError,
    Summary,
    check_output,
    read_rows,
    resolve_inputs,
    segment_dataset,
    segment_to_parquet,
)
from .rows import SCHEMA, row_detections
from .worker import SegmentBatch, annotated_name

__all__ = [
    "SCHEMA", "OutputCheckError", "RayJobError", "SegmentBatch", "Summary", "annotated_name",
    "check_output", "read_rows", "resolve_inputs", "row_detections", "segment_dataset",
    "segment_to_parquet",
]
