"""Segment many images on a Ray cluster into result shards: nothing lost, nothing twice.

:func:`segment_to_parquet` reads the inputs with ``read_binary_files``, segments them in a pool
of :class:`~pixellib.ray.worker.SegmentBatch` actors and streams the rows back to the driver,
which writes them as shards ``part-<hash>.parquet`` (or ``.jsonl``) into the output folder:

* each shard is written atomically and named by the hash of the paths it holds, so a shard
  is either complete or absent, and writing the same rows again gives the same file;
* actors that die are restarted and their batch is retried (see :data:`_RETRIES`); an
  image that kills its worker every time gets an error row (:func:`_run_passes`); a row
  whose path was already written is dropped;
* ``skip_existing=True`` reads the paths already in the folder and segments only the
  missing ones (an error row counts as done: it records the image's problem), after
  checking that the folder's rows were made with the same model and settings
  (:mod:`pixellib.ray.settings`, recorded in the folder's ``pixellib-job.json``);
* at the end the folder is checked: every input path has exactly one row, else
  :class:`OutputCheckError`.

The output folder is written by the driver, so it is a local or mounted folder; rows are
small (RLE masks), so that is never the bottleneck. For a bucket, use :func:`segment_dataset`
and Ray's own ``write_parquet("s3://...")``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from pixellib.errors import InputNotFoundError, InvalidArgumentError, OutputCheckError, RayJobError
from pixellib.media.files import atomic_path, link_problem, parse_json, write_text
from pixellib.media.images import resolve_max_pixels
from pixellib.runtime import heap
from pixellib.wording import counted, shortened

from .rows import SCHEMA, error_row, rows_table
from .settings import SETTINGS_FILE, check_same, job_settings, record
from .worker import SegmentBatch

logger = logging.getLogger(__name__)

FORMATS = {"parquet": ".parquet", "jsonl": ".jsonl"}
SHARD_PREFIX = "part-"
#: Logical CPUs a default-sized actor pool leaves free for Ray Data's read tasks.
READ_CPUS = 1.0
#: Most CPUs (torch threads) a default CPU actor takes. On the 2-core machine measured
#: (docs/scale-out.md) one 2-thread actor beat two 1-thread actors, as one 2-thread process
#: beats two 1-thread ones; the cap gives a big node several actors rather than one.
MAX_ACTOR_CPUS = 4


def default_actor_cpus() -> float:
    """CPUs per CPU actor by default: a node's CPUs less :data:`READ_CPUS`, shared evenly by
    as few actors as keep each at or under :data:`MAX_ACTOR_CPUS` (2 CPUs: one actor of 1;
    3: one of 2; 16: four of 3.75, each running 4 torch threads). The largest node of the
    cluster decides."""
    per_node = max((n.get("Resources", {}).get("CPU", 0.0) for n in ray.nodes()
                    if n.get("Alive")), default=1.0)
    usable = per_node - read_cpus(per_node)
    return usable / math.ceil(usable / MAX_ACTOR_CPUS) if usable >= 1 else max(usable, 0.5)



#: How often a batch is retried after its actor died (a crash in a decoder or the model, out of
#: memory), each time on a restarted actor. Past that the pass stops, and the images it had
#: not written are isolated (see :func:`segment_to_parquet`): Ray Data's default, retrying
#: without limit, ran for ever on an image that kills its worker every time.
MAX_TASK_RETRIES = 2
#: Restarts of one actor. As many as the retries: an actor that died that often stays dead,
#: which gives its CPUs back (a restarting one holds them, and the next pass's reading would
#: wait for them for ever); its pass stops and the next one starts a new pool.
_RETRIES = {"max_restarts": MAX_TASK_RETRIES, "max_task_retries": MAX_TASK_RETRIES}
#: Errors that say an actor (its process) died, not that an image was bad.
_WORKER_DIED = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.OutOfMemoryError)
#: Environment variables the driver passes on to the workers (when set where it runs).
FORWARDED_ENV = ("PIXELLIB_MAX_PIXELS", "PIXELLIB_NO_HEAP_REUSE", "PIXELLIB_HOME",
                 "PIXELLIB_NO_WINOGRAD", "PIXELLIB_NO_TORCHVISION")


def _own_thread_option() -> dict:
    """``ActorPoolStrategy`` keywords that run the model on the actor's own thread.

    By default Ray Data (2.4x on) calls an actor's callable on a helper thread, so that
    batching can overlap it. torch runs slower there: measured on this project's 2-core
    machine (docs/scale-out.md, ``benchmarks/ray_overhead.py``), the actor's two torch threads
    kept only ~1.6 cores busy instead of ~2, and an image took 3.5-3.8 s instead of 2.8-3.0 s.
    ``enable_true_multi_threading=True`` calls it directly; with one call at a time per actor
    (Ray Data's default ``max_concurrency`` of 1) nothing runs concurrently either way."""
    import inspect

    params = inspect.signature(ray.data.ActorPoolStrategy.__init__).parameters
    return {"enable_true_multi_threading": True} if "enable_true_multi_threading" in params else {}


_OWN_THREAD = _own_thread_option()


@dataclass
class Summary:
    """What a run did. ``images`` and ``errors`` count this run's rows; ``skipped`` the
    inputs already in the folder; ``first_result_s`` the wait for the first row."""

    images: int = 0
    objects: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    first_result_s: float | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    shards: list[Path] = field(default_factory=list)


# ----------------------------------------------------------------------------- inputs


def row_id(path: str) -> str:
    """The id Ray gives a file: the path, without the scheme of a remote URI."""
    return path.split("://", 1)[1] if "://" in path else path


def resolve_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """The image files named by ``inputs``: local files, folders (their images) and globs
    as the CLI reads them (absolute paths), or remote URIs (``s3://``, ``gs://``...: a file,
    or a folder listed recursively for image extensions)."""
    from pixellib.cli.jobs import VIDEO_EXTENSIONS, _expand_inputs
    from pixellib.media.images import IMAGE_EXTENSIONS

    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    local = [os.fspath(i) for i in items if "://" not in os.fspath(i)]
    remote = [os.fspath(i) for i in items if "://" in os.fspath(i)]
    found = [str(p.absolute()) for p in _expand_inputs(local)] if local else []
    videos = [p for p in found if Path(p).suffix.lower() in VIDEO_EXTENSIONS]
    if videos:
        raise RayJobError(f"videos are not segmented on Ray (images only): {', '.join(videos)}")
    for uri in remote:
        import pyarrow.fs as pafs

        fs, base = pafs.FileSystem.from_uri(uri)
        scheme = uri.split("://", 1)[0]
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.Directory:
            listed = fs.get_file_info(pafs.FileSelector(base, recursive=True))
            found += sorted(f"{scheme}://{f.path}" for f in listed if f.is_file
                            and Path(f.path).suffix.lower() in IMAGE_EXTENSIONS)
        elif info.type == pafs.FileType.File:
            found.append(uri)
        else:
            raise FileNotFoundError(f"input not found: {uri!r}")
    return list(dict.fromkeys(found))


# ----------------------------------------------------------------------------- shards


def shard_paths(output_dir: str | os.PathLike) -> list[Path]:
    """The result shards in ``output_dir`` (both formats), sorted by name."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.name.startswith(SHARD_PREFIX) and p.suffix in FORMATS.values())


def read_shard(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    try:
        return _read_shard(path, columns)
    except (OSError, ValueError, KeyError, TypeError, OverflowError, pa.ArrowException) as exc:
        raise RayJobError(f"{path}: not a readable result shard ({type(exc).__name__}: "
                          f"{shortened(str(exc), 200)}); move it out of the "
                          "folder") from None


def _read_shard(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path, columns=list(columns) if columns else None)
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(parse_json(line))
                except ValueError as exc:  # its own "line 1 column N" is within the row
                    raise ValueError(f"line {number}: {exc}") from None
    table = rows_table(rows)
    return table.select(list(columns)) if columns else table


def read_rows(output_dir: str | os.PathLike, columns: Sequence[str] | None = None) -> pa.Table:
    """Every row of the result shards in ``output_dir`` as one Arrow table (none for a folder
    without shards; a missing folder, or a file, raises :class:`InputNotFoundError`)."""
    if not Path(output_dir).is_dir():
        raise InputNotFoundError(f"no result folder {str(output_dir)!r}: "
                                 + ("it is a file" if Path(output_dir).exists()
                                    else "it does not exist"))
    tables = [read_shard(p, columns) for p in shard_paths(output_dir)]
    if not tables:
        return rows_table([]).select(list(columns)) if columns else rows_table([])
    return pa.concat_tables(tables)


def write_shard(output_dir: Path, table: pa.Table, fmt: str) -> Path:
    """Write ``table`` atomically as ``part-<16 hex of sha1(sorted paths)><ext>``."""
    ids = sorted(table.column("path").to_pylist())
    digest = hashlib.sha1("\n".join(ids).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    path = output_dir / f"{SHARD_PREFIX}{digest}{FORMATS[fmt]}"
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    else:
        lines = (json.dumps(r, ensure_ascii=False) for r in table.to_pylist())
        write_text(path, "".join(f"{line}\n" for line in lines))
    return path


def check_output(output_dir: str | os.PathLike, ids: Iterable[str]) -> None:
    """Raise :class:`OutputCheckError` unless each id has exactly one row in the folder."""
    counts = Counter(read_rows(output_dir, ["path"]).column("path").to_pylist())
    missing = [i for i in ids if counts[i] == 0]
    twice = sorted(i for i, n in counts.items() if n > 1)
    if missing or twice:
        raise OutputCheckError(
            f"{output_dir}: {len(missing)} inputs have no row, {len(twice)} have several "
            f"(first: {', '.join((missing + twice)[:5])}); rerun with --skip-existing / "
            "skip_existing=True to complete the folder"
        )


# ----------------------------------------------------------------------------- running


@contextlib.contextmanager
def connected(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[None]:
    """Use the Ray connection already made, or connect to ``address`` (``"auto"``,
    host:port), or with ``None`` / ``"local"`` start a private local cluster (its own
    temporary folder; ``num_cpus`` logical CPUs, default the cores plus one for reading).
    What this opened it closes. A Ray Client address (``ray://...``) is refused: Ray Data's
    iterators, which stream the results to this driver, do not run through Ray Client."""
    if ray.is_initialized():
        from ray.util.client import ray as client

        if client.is_connected():  # the caller's own ray.init("ray://...")
            raise RayJobError("cannot run through Ray Client (this process connected with "
                              f"ray.init('ray://...')): {_CLIENT_REASON}")
        yield
        return
    _check_address(address)
    temp_dir = None
    if address in (None, "local"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        temp_dir = tempfile.mkdtemp(prefix="pixellib-ray-")
        try:
            with _keeps_sigterm():
                ray.init(address="local",
                         num_cpus=num_cpus or (cores or os.cpu_count() or 1) + 1,
                         include_dashboard=False, _temp_dir=temp_dir)
        except BaseException:  # Ctrl-C or SIGTERM while it started: its folder goes too
            ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
    else:
        unreachable = _unreachable(address)
        if unreachable:  # Ray itself retries a silent address for minutes
            raise RayJobError(f"cannot connect to a Ray cluster at {address!r}: {unreachable}")
        if address.strip() == "auto":  # Ray takes $RAY_ADDRESS for it
            _check_address(os.environ.get("RAY_ADDRESS"))
        try:
            with _keeps_sigterm():
                ray.init(address=address)
        except (ValueError, ConnectionError) as exc:  # "Invalid address format", none found
            if address == "auto":
                hint = (" (start one with `ray start --head`, or give no address for a "
                        "private local cluster)")
            elif ":" in address:
                hint = _auth_hint()
            else:
                hint = (" (did an input follow --ray? put --ray after the inputs, or write "
                        "--ray=ADDRESS)")
            raise RayJobError(f"cannot connect to a Ray cluster at {address!r}: "
                              f"{shortened(str(exc), 300)}{hint}") from None
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


@contextlib.contextmanager
def _keeps_sigterm() -> Iterator[None]:
    """``ray.init`` replaces the SIGTERM handler with its own ``sys.exit(15)``: a handler the
    caller had set (the CLI's, which deletes half-written files and exits with 143) is put
    back. Python's default stays replaced: Ray's handler shuts its processes down."""
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    except SystemExit as exc:
        # A SIGTERM while ray.init ran met Ray's handler (exit status 15, no word): it is
        # the caller's handler's to answer (the CLI's: its message and 143).
        if main and callable(previous) and exc.code == 15:
            previous(signal.SIGTERM, None)
        raise
    finally:
        if main and callable(previous):
            signal.signal(signal.SIGTERM, previous)


def _check_address(address: str | None) -> None:
    """Refuse a Ray Client address (``ray://...``): Ray Data's iterators, which stream the
    results back to this driver, fail under Ray Client."""
    if address is not None and address.strip().lower().startswith("ray://"):
        raise RayJobError(f"cannot run on {address!r}: a ray:// address is Ray Client's; "
                          + _CLIENT_REASON)


_CLIENT_REASON = (
    "Ray Data cannot stream the results back to this machine through Ray Client; run the "
    "command on a node of the cluster (`ray attach`, ssh, or `ray job submit -- pixellib "
    "segment ...`) with --ray auto or --ray HEAD_HOST:6379")


#: Seconds to wait for a Ray head's port to accept a connection before calling it unreachable.
CONNECT_TIMEOUT = 10.0


def _auth_hint() -> str:
    """Why a cluster that answers may still refuse this driver: Ray turns token
    authentication on for a head started where a token exists, and a driver given an explicit
    address sends its token only when ``RAY_AUTH_MODE=token`` says so."""
    if os.environ.get("RAY_AUTH_MODE"):
        return ""
    return (" (if the cluster uses token authentication, as `ray start --head` does where a "
            "token exists, set RAY_AUTH_MODE=token here, with the cluster's token in "
            "~/.ray/auth_token or RAY_AUTH_TOKEN)")


def _unreachable(address: str) -> str | None:
    """Why nothing can answer at a ``host:port`` address (a TCP connection to it fails or
    times out), or None (reachable, or another form: Ray decides)."""
    match = re.fullmatch(r"(\[[^\]]+\]|[^:/\[\]]+):(\d{1,5})/?", address.strip())
    if match is None:
        return None
    host, port = match.group(1).strip("[]"), int(match.group(2))
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            return None
    except TimeoutError:
        return (f"nothing answered at {host}:{port} within {CONNECT_TIMEOUT:g} s (is the "
                "address right, and `ray start --head` running there?)")
    except OSError as exc:
        return (f"{host}:{port} cannot be reached ({exc.strerror or exc}; is the address "
                "right, and `ray start --head` running there?)")


def _checked_model(model, speed: str | None, confidence: float | None) -> str:
    """``model`` as the workers get it; bad settings fail here, not in every actor."""
    from pixellib.checkpoint.hub import MODEL_URLS, resolve_model
    from pixellib.config import inference_config

    inference_config(speed, confidence)
    if str(model).strip().lower() in MODEL_URLS:  # a released name: each node caches it
        return str(model)
    # A missing file fails here; workers may run in another folder: pass it absolute.
    return str(resolve_model(model, download=False).absolute())


def segment_dataset(
    ds: ray.data.Dataset, *, model: str | os.PathLike, speed: str | None = None,
    confidence: float | None = None, classes: Sequence[int | str] | None = None,
    concurrency: int | None = None, batch_size: int = 8, num_cpus: float | None = None,
    num_gpus: float = 0, polygons: bool = False,
    annotate_dir: str | os.PathLike | None = None,
    worker: type = SegmentBatch, one_at_a_time: bool = False, read_num_cpus: float = 1.0,
) -> ray.data.Dataset:
    """``ds`` (rows of ``read_binary_files`` / ``read_images`` with paths) mapped to result
    rows by a pool of ``concurrency`` actors of ``num_cpus`` CPUs and ``num_gpus`` GPUs each.
    Defaults: ``num_cpus`` 1 for a GPU actor, else :func:`default_actor_cpus`; as many
    actors as the cluster holds, leaving :func:`read_cpus` for reading. Sizes that cannot
    run on the cluster as it is (a GPU actor without a GPU, actors that leave no CPU for
    reading) raise :class:`RayJobError` instead of waiting for ever. ``read_num_cpus``: what
    each of ``ds``'s read tasks asks for (Ray's default, 1; ``read_binary_files(...,
    num_cpus=0.5)`` lets one actor and the reading share a 1-CPU cluster). ``one_at_a_time``:
    one image per call and one call in flight per actor (finding an image that kills
    workers)."""
    classes = _class_ids(classes)
    _check_numbers(concurrency=concurrency, batch_size=batch_size, num_cpus=num_cpus,
                   num_gpus=num_gpus)
    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 0.0)), float(res.get("GPU", 0.0))
    if num_gpus and gpus < num_gpus:  # no actor could start: Ray Data would wait for ever
        raise RayJobError(
            f"the Ray cluster has {'no GPU' if not gpus else f'{gpus:g} GPUs'}, and each actor "
            f"needs {num_gpus:g} (--device cuda): run on a cluster with GPUs, or on the CPU")
    if num_cpus is None:
        num_cpus = 1.0 if num_gpus else default_actor_cpus()
    if concurrency is None:
        if num_gpus:
            concurrency = int(gpus // num_gpus)
        else:
            concurrency = int((cpus - read_cpus(cpus)) / num_cpus + 1e-9)
        concurrency = max(1, concurrency)
    reading = max(read_cpus(cpus), read_num_cpus)  # a read task of ds: 1 CPU unless said
    needed = concurrency * num_cpus + reading
    if needed > cpus + 1e-9:  # the actors would hold every CPU, and reading waits for ever
        hint = ("give fewer actors (concurrency) or fewer CPUs each (num_cpus), or leave both "
                "to their defaults")
        if read_num_cpus > read_cpus(cpus):  # (a 1-CPU cluster: the defaults hung here)
            hint = (f"read the dataset with num_cpus={read_cpus(cpus):g} (e.g. "
                    f"ray.data.read_binary_files(..., num_cpus={read_cpus(cpus):g})) and pass "
                    f"read_num_cpus={read_cpus(cpus):g}, or use segment_to_parquet, which "
                    "does so")
        raise RayJobError(
            f"{concurrency} actor(s) of {num_cpus:g} CPUs and the reading ({reading:g} CPU) "
            f"need {needed:g} CPUs, and the Ray cluster has {cpus:g}: {hint}")
    model = _checked_model(model, speed, confidence)
    kwargs = dict(model=str(model), speed=speed, confidence=confidence, polygons=polygons,
                  classes=classes,
                  annotate_dir=None if annotate_dir is None else str(Path(annotate_dir).absolute()))
    # Actors reuse freed memory between images (SegmentBatch); one malloc arena keeps that
    # working whichever thread Ray calls them on (a helper thread in Ray versions without
    # enable_true_multi_threading): pixellib.runtime.heap.worker_env.
    env = {**heap.worker_env(),
           **{k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}}
    strategy = dict(_OWN_THREAD)
    if one_at_a_time:  # in input order, one image in flight: the one a crash names
        strategy["max_tasks_in_flight_per_actor"] = 1
    return ds.map_batches(
        worker, fn_constructor_kwargs=kwargs, batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency, **strategy), num_cpus=num_cpus,
        num_gpus=num_gpus or None, **({"runtime_env": {"env_vars": env}} if env else {}),
        **_RETRIES,  # Ray 2.5x-2.63 takes them only as ray_remote_args (deprecated there)
    )


def read_cpus(cluster_cpus: float) -> float:
    """CPUs a read task asks for: :data:`READ_CPUS`, or half of a cluster smaller than two
    (one CPU: the actor and the reading get half each)."""
    return min(READ_CPUS, cluster_cpus / 2) if cluster_cpus > 0 else READ_CPUS


def _class_ids(classes) -> list[int] | None:
    """``classes`` as COCO class ids: ids and/or names, as every entry point takes them."""
    if classes is None:
        return None
    from pixellib.classes import class_ids

    try:
        return class_ids(classes)
    except InvalidArgumentError as exc:
        raise RayJobError(f"classes: {exc}") from None


def _check_numbers(**values) -> None:
    """Refuse, before any work, sizes Ray would reject deep in the job (or accept and hang)."""
    for name, value in values.items():
        if value is None:
            continue
        whole = name in ("concurrency", "batch_size", "rows_per_shard")
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool) and math.isfinite(value) and (
            (value >= 1 and float(value).is_integer()) if whole
            else (value >= 0 if name == "num_gpus" else value > 0))
        if not ok:
            what = ("a whole number, at least 1" if whole else
                    "a number, 0 or more" if name == "num_gpus" else "a number above 0")
            raise RayJobError(f"{name} must be {what}, got {value!r}")
    # The workers read $PIXELLIB_MAX_PIXELS (forwarded to them): a bad value would fail every row.
    resolve_max_pixels()


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes of the file system, kept as surrogates
        return False


def _unreadable(path: str) -> str | None:
    """Why Ray could not read the local file ``path`` (None for a URI or a readable file)."""
    if "://" in path:
        return None
    if not os.path.exists(path):
        if os.path.islink(path):
            return f"image not found: {link_problem(path)}"
        return "image not found"
    if not os.path.isfile(path):  # a pipe would block the reader, a device never end
        return "not a regular file (a pipe, socket or device): nothing to read as an image"
    if not os.access(path, os.R_OK):
        return "no permission to read it"
    return None


def segment_to_parquet(
    inputs, output_dir: str | os.PathLike, *, model: str | os.PathLike, speed: str | None = None,
    confidence: float | None = None, classes: Sequence[int | str] | None = None,
    concurrency: int | None = None, batch_size: int = 8, num_gpus: float = 0,
    address: str | None = None, num_cpus: float | None = None, format: str = "parquet",
    skip_existing: bool = False, polygons: bool = False,
    annotate_dir: str | os.PathLike | None = None,
    rows_per_shard: int = 1000, worker: type = SegmentBatch,
) -> Summary:
    """Segment ``inputs`` (folder, glob, file, URI or a list of them) into result shards in
    ``output_dir`` (see the module doc) and return a :class:`Summary`.

    ``address``: see :func:`connected`. The other options are :func:`segment_dataset`'s and
    :class:`~pixellib.ray.worker.SegmentBatch`'s (``worker`` may be a subclass of it).
    """
    started = time.perf_counter()
    _check_address(address)  # before the model and the inputs are looked at
    if format not in FORMATS:
        raise RayJobError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    classes = _class_ids(classes)
    _check_numbers(concurrency=concurrency, batch_size=batch_size, num_cpus=num_cpus,
                   num_gpus=num_gpus, rows_per_shard=rows_per_shard)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise RayJobError(f"output {str(out)!r} is a file; results need a folder")
    model = _checked_model(model, speed, confidence)
    paths = resolve_inputs(inputs)
    not_utf8 = [p for p in paths if not _utf8(p)]
    if not_utf8:  # Arrow and Ray's reader take UTF-8 paths only (the name would be mangled)
        raise RayJobError(
            f"{len(not_utf8)} file name(s) are not valid UTF-8, which Ray's reader and the "
            f"result files need; rename them: {', '.join(repr(p) for p in not_utf8[:5])}")
    ids = {row_id(p): p for p in paths}
    summary = Summary()
    existing = shard_paths(out)
    if existing and not skip_existing:
        raise RayJobError(f"output folder {str(out)!r} already holds "
                         f"{counted(len(existing), 'result shard')}; pass --skip-existing "
                         "(skip_existing=True) to complete it, or choose an empty folder")
    wanted = job_settings(model, speed, confidence, classes, polygons)
    if existing:  # rows made with other settings must not be mixed in
        check_same(out, wanted)
    done = set(read_rows(out, ["path"]).column("path").to_pylist()) if existing else set()
    todo = [p for i, p in ids.items() if i not in done]
    summary.skipped = len(ids) - len(todo)
    created, recorded = not out.exists(), False
    try:
        _writable_folder(out)  # before the cluster works: not when its first shard is due
        if not existing:
            record(out, wanted)
            recorded = True
        # Ray's reader stops the whole job on a file it cannot open: those get their error
        # rows here, and the job goes on with the rest.
        unreadable = {p: why for p in todo if (why := _unreadable(p))}
        if unreadable:
            todo = [p for p in todo if p not in unreadable]
            _error_rows(out, format, unreadable, summary)
        if todo:
            with connected(address):
                _run_passes(todo, out, format, rows_per_shard, set(ids) - done, summary,
                            started, dict(
                                model=model, speed=speed, confidence=confidence,
                                classes=classes, concurrency=concurrency,
                                batch_size=batch_size, num_cpus=num_cpus, num_gpus=num_gpus,
                                polygons=polygons, annotate_dir=annotate_dir, worker=worker))
    except BaseException:
        if recorded and not shard_paths(out):  # nothing was written (no cluster, say):
            (out / SETTINGS_FILE).unlink(missing_ok=True)  # no record of no rows,
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # and no empty folder left
        raise
    check_output(out, ids)
    summary.seconds = time.perf_counter() - started
    return summary


def _writable_folder(out: Path) -> None:
    """Create ``out`` if needed and check that a file can be written in it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".pixellib-probe-"):
            pass
    except OSError as exc:
        raise RayJobError(f"cannot write results in {str(out)!r}: "
                          f"{exc.strerror or exc}") from None


def _error_rows(out: Path, fmt: str, reasons: dict[str, str], summary: Summary) -> None:
    summary.shards.append(write_shard(
        out, rows_table([error_row(p, why) for p, why in reasons.items()]), fmt))
    summary.errors += len(reasons)
    summary.failed += [(p, " ".join(why.split())) for p, why in reasons.items()]


def _run_passes(todo: list[str], out: Path, fmt: str, rows_per_shard: int, wanted: set[str],
                summary: Summary, started: float, options: dict) -> None:
    """Segment ``todo`` into shards, getting past images that kill their worker.

    A pass runs the whole list at full size. When one stops because an actor died on a batch
    :data:`MAX_TASK_RETRIES` + 1 times (what was written stays), the first images it had not
    written (those it may have had in flight) go through one at a time, in order, on one
    actor. When that pass stops too, the first image it did not write is tried alone: if it
    kills that pass as well it is the culprit and gets an error row, and the rest goes on at
    full size; if not, the isolation goes on after it. Every pass writes rows or names a
    culprit, so the job ends."""
    remaining = list(todo)
    options = dict(options)
    concurrency = options.pop("concurrency")
    batch_size = options.pop("batch_size")
    # The images a pass may have in flight: 4 calls per actor (Ray Data's default) of a batch.
    size = int(concurrency or max(1.0, ray.cluster_resources().get("CPU", 1.0)))
    isolate = (4 * size + 1) * int(batch_size)
    window = 0  # > 0: the next pass takes that many images, one at a time, in order
    while remaining:
        part = remaining[:window] if window else remaining
        sizes = dict(concurrency=1, batch_size=1, one_at_a_time=True) if window else dict(
            concurrency=concurrency, batch_size=batch_size)
        reading = read_cpus(float(ray.cluster_resources().get("CPU", 0.0)))
        ds = None
        try:
            ds = segment_dataset(ray.data.read_binary_files(
                part, include_paths=True, **_read_blocks(len(part), sizes["batch_size"]),
                **({"num_cpus": reading} if reading < 1 else {})),
                **sizes, **options, read_num_cpus=reading)
            with _ordered(bool(window)):
                _stream(ds, out, fmt, rows_per_shard, wanted, summary, started)
            failure = None
        except _WORKER_DIED as exc:
            # Kept as text: the exception's traceback would keep the pass (and its actors,
            # which hold their CPUs) alive.
            failure = (type(exc).__name__, shortened(str(exc), 200))
        except Exception:
            # Ray's reader stops the pass on a file it cannot open: one deleted, moved or
            # made unreadable since the job began (the check before the cluster started
            # found it fine). Those get error rows, and the rest goes on.
            written = set(read_rows(out, ["path"]).column("path").to_pylist())
            gone = {p: f"{why} (it changed after the job started)" for p in part
                    if row_id(p) not in written and (why := _unreadable(p))}
            if not gone:
                raise
            del ds
            _wait_for_the_pool_to_go()
            logger.warning("pixellib: %s could no longer be read (recorded as error rows): %s",
                           counted(len(gone), "input"), ", ".join(list(gone)[:3]))
            _error_rows(out, fmt, gone, summary)
            remaining = [p for p in remaining if row_id(p) not in written and p not in gone]
            continue
        if failure is not None:
            del ds
            _wait_for_the_pool_to_go()
        written = set(read_rows(out, ["path"]).column("path").to_pylist())
        left = [p for p in part if row_id(p) not in written]
        if failure is None or not left:  # (any gap is reported by check_output)
            remaining = remaining[len(part):]
            window = isolate if window == 1 else 0  # a suspect cleared: isolate on
            continue
        kind, reason = failure
        if window == 1:  # it alone kills the worker
            culprit = left[0]
            logger.warning("pixellib: a Ray worker died on %s every time; recorded as an "
                           "error row", culprit)
            _error_rows(out, fmt, {culprit: (
                f"WorkerDied: the worker process died on this image {MAX_TASK_RETRIES + 1} "
                f"times (a crash in a decoder or the model, or out of memory): {kind}: "
                f"{reason}")}, summary)
            written.add(row_id(culprit))
            window = 0
        elif window:
            # The first image not written is the suspect (one finished just before the
            # crash may not have come back): tried alone next.
            window = 1
        else:
            window = isolate
            logger.warning("pixellib: a Ray worker died %d times on one batch (%s); looking "
                           "for the image that causes it, one at a time",
                           MAX_TASK_RETRIES + 1, kind)
        remaining = [p for p in remaining if row_id(p) not in written]


#: At most this many read blocks per pass (a million files: blocks of 100).
MAX_READ_BLOCKS = 10_000


def _read_blocks(files: int, batch_size: int) -> dict:
    """``read_binary_files``' block count: a block per batch (at most
    :data:`MAX_READ_BLOCKS`). Ray's own choice is a few blocks per CPU (1,000 files on 2
    CPUs: 4 blocks of 250), and a block is what an actor's task takes and returns at its end:
    what a stop loses, what a dead worker's retry redoes, and the wait for the first result
    were a quarter of the job, not a batch."""
    blocks = min(MAX_READ_BLOCKS, max(1, math.ceil(files / max(1, batch_size))))
    return {_BLOCKS_KEYWORD: blocks}


def _blocks_keyword() -> str:
    """``read_binary_files``' keyword for the block count (``parallelism`` before Ray 2.10)."""
    import inspect

    params = inspect.signature(ray.data.read_binary_files).parameters
    return "override_num_blocks" if "override_num_blocks" in params else "parallelism"


_BLOCKS_KEYWORD = _blocks_keyword()


def _wait_for_the_pool_to_go(timeout: float = 60.0) -> None:
    """After a failed pass, wait (up to ``timeout`` s) until its actors have left and given
    their CPUs and GPUs back: the next pass's reading would wait for them for ever."""
    import gc

    gc.collect()  # the dataset's last references: its actors are killed with them
    total = ray.cluster_resources()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        free = ray.available_resources()
        if all(free.get(k, 0.0) >= total.get(k, 0.0) - 1e-6 for k in ("CPU", "GPU")):
            return
        time.sleep(0.2)


@contextlib.contextmanager
def _ordered(on: bool) -> Iterator[None]:
    """Ray Data keeps the input order while on (this driver's context; restored after)."""
    if not on:
        yield
        return
    options = ray.data.DataContext.get_current().execution_options
    previous = options.preserve_order
    options.preserve_order = True
    try:
        yield
    finally:
        options.preserve_order = previous


def _stream(ds, out: Path, fmt: str, rows_per_shard: int, wanted: set[str],
            summary: Summary, started: float) -> None:
    """Write the dataset's rows as shards of about ``rows_per_shard`` rows, each path once."""
    pending: list[pa.Table] = []
    seen: set[str] = set()

    def flush() -> None:
        if pending:
            summary.shards.append(write_shard(out, pa.concat_tables(pending), fmt))
            pending.clear()

    # What was segmented before a failure or a stop is kept: --skip-existing resumes after
    # it. Without prefetching, a finished block comes here at once (with Ray's default of
    # one, each came only when the next was done, so a stop lost it).
    try:
        for block in ds.iter_batches(batch_size=None, batch_format="pyarrow",
                                     prefetch_batches=0):
            if summary.first_result_s is None:
                summary.first_result_s = time.perf_counter() - started
            block = block.cast(SCHEMA)
            objects = pc.list_value_length(block.column("class_ids")).to_pylist()
            keep = []
            rows = zip(block.column("path").to_pylist(), block.column("error").to_pylist(), objects)
            for k, (path, error, n) in enumerate(rows):
                if path in seen or path not in wanted:
                    logger.warning("pixellib: dropped a repeated or unknown row for %s", path)
                    continue
                seen.add(path)
                keep.append(k)
                if error is None:
                    summary.images += 1
                    summary.objects += n
                else:
                    summary.errors += 1
                    summary.failed.append((path, error))
            pending.append(block.take(keep))
            if sum(t.num_rows for t in pending) >= rows_per_shard:
                flush()
    finally:
        flush()
