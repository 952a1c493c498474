"""The ``pixellib`` command: segment images, folders, globs and videos; download and inspect models.

Exit codes: 0 success; 1 a user error (one line ``pixellib: error: ...`` on stderr, no
traceback), or a batch where nothing succeeded, or any failure with ``--strict``; 2 bad
arguments (argparse). Unexpected exceptions keep their traceback.

Output naming for ``segment``: :mod:`pixellib.cli.jobs`.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BATCH_SKIPPED, InvalidArgumentError
from ..media.files import (
    Rollback,
    all_or_nothing,
    parse_json,
    real_path,
    unwritable_file,
    unwritable_folder,
    writable_file,
)
from ..wording import shown_name
from . import outputs
from .args import probability, user_path
from .jobs import DEFAULT_BATCH_FOLDER, VIDEO_EXTENSIONS, Job, plan_jobs


@dataclass
class _Stats:
    images: int = 0
    videos: int = 0
    frames: int = 0
    objects: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    coco: dict[str, dict] = field(default_factory=dict)  # input -> its to_coco_json dict
    # outputs of a background effect with no object in them (remove-bg: fully transparent)
    no_object: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- arguments


def _class_list(text: str) -> list[int]:
    from ..classes import COCO_CLASSES, class_id

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected class names such as person,car")
    ids = []
    for name in names:
        if name.isascii() and name.isdigit():  # an id, as the server and the API take them
            if int(name) >= len(COCO_CLASSES):
                raise argparse.ArgumentTypeError(
                    f"class id {name} is not a COCO class id (0 to {len(COCO_CLASSES) - 1})")
            ids.append(int(name))
            continue
        try:
            ids.append(class_id(name))
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return ids


class _Parser(argparse.ArgumentParser):
    """argparse without abbreviations: ``--i`` took ``serve --insecure-no-auth`` and ``--r``
    ``--ray``, and any prefix a script used would break once a new option shared it.
    Subcommands' parsers are of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pixellib", description="PointRend instance segmentation (PixelLib compatible)."
    )
    from .. import __version__
    from ..media.images import IMAGE_EXTENSIONS

    parser.add_argument("--version", action="version", version=f"pixellib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    seg = sub.add_parser("segment", help="segment images, folders, globs or videos",
                         description="Segment images, folders, globs or videos into "
                                     "annotated copies.", epilog=outputs.EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    seg.add_argument("inputs", nargs="+", metavar="INPUT",
                     help="image file, folder (its images), glob (quote it) or video file "
                          f"({' '.join(VIDEO_EXTENSIONS)})")
    seg.add_argument("-o", "--output", type=user_path, metavar="OUT",
                     help="output file for one input, else output folder "
                          f"(default: <stem>_segmented<ext> beside a single input: .mp4 for "
                          f"a video, .png for a picture other than "
                          f"{' '.join(IMAGE_EXTENSIONS)}; ./{DEFAULT_BATCH_FOLDER}/ "
                          "otherwise)")
    seg.add_argument("--model", default="resnet50", metavar="PATH_OR_NAME",
                     help="checkpoint file, or resnet50 / resnet101 (downloaded and cached on "
                          "first use; default: resnet50)")
    seg.add_argument("--speed", choices=("fast", "rapid"),
                     help="PixelLib detection_speed: the long side is scaled to 667 px (fast) "
                          "or 333 px (rapid); default: short side 800 px, long side <= 1333")
    seg.add_argument("--confidence", type=probability, metavar="F",
                     help="score threshold in [0, 1] (default: 0.5, fast 0.3, rapid 0.2)")
    seg.add_argument("--classes", type=_class_list, metavar="NAMES",
                     help="keep only these classes, comma separated names or COCO ids (e.g. "
                          "person,car or 0,2)")
    seg.add_argument("--boxes", action="store_true", help="draw boxes and labels")
    seg.add_argument("--extract", choices=("mask", "box"),
                     help="also save each object: mask cut-out or box crop, in "
                          "<output stem>_extracts/")
    seg.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    seg.add_argument("--strict", action="store_true",
                     help="exit with 1 when any input fails (default: only when all fail); "
                          "a video cut short (fewer frames than it declares) fails too")
    seg.add_argument("--skip-existing", action="store_true",
                     help="skip inputs whose output file already exists (in a batch folder: "
                          "made from that input with the same options, per its record)")
    seg.add_argument("--track", action="store_true",
                     help="videos: give each object an id that persists across frames; its "
                          "colour and caption (#id) follow the id")
    seg.add_argument("--coco", type=user_path, metavar="FILE.json",
                     help="also write the image detections as COCO-style JSON")
    outputs.add_arguments(seg)
    seg.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="segment on a Ray cluster into result shards in -o OUT_DIR (a local "
                          "one without ADDRESS; put INPUTs first; see docs/scale-out.md)")
    seg.add_argument("--format", choices=("parquet", "jsonl"), default=None,
                     help="--ray result format (default: parquet)")
    seg.set_defaults(func=_cmd_segment, usage=seg)

    dl = sub.add_parser("download", help="download a released model into the cache")
    dl.add_argument("name", choices=("resnet50", "resnet101"))
    dl.add_argument("--url", help="download from this URL instead of the PixelLib release")
    dl.add_argument("--force", action="store_true", help="download even if already cached")
    dl.set_defaults(func=_cmd_download)

    info = sub.add_parser("info", help="describe a checkpoint")
    info.add_argument("model", metavar="MODEL", help="checkpoint file, or resnet50 / resnet101")
    info.set_defaults(func=_cmd_info)

    conv = sub.add_parser("convert", help="write a checkpoint as .safetensors (no pickle)")
    conv.add_argument("src", metavar="IN", help="checkpoint file, or resnet50 / resnet101")
    conv.add_argument("dst", metavar="OUT.safetensors")
    conv.set_defaults(func=_cmd_convert)
    from .serve import add_serve_parser
    add_serve_parser(sub)

    from .evaluate import add_evaluate_parser

    add_evaluate_parser(sub)
    return parser


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    _stand_in_for_closed_streams()
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args, extra = parser.parse_known_args(words)
        _check_words(parser, args, words, extra)
        if getattr(args, "format", None) is not None and getattr(args, "ray", None) is None:
            args.usage.error("--format chooses the result files of --ray; without it the "
                             "outputs are annotated copies")
    except SystemExit as e:  # --help (0) or a usage error (2)
        code = e.code if isinstance(e.code, int) else 2
        if code == 2 and any(w == "--ray" and nxt[:1] not in ("", "-")
                             for w, nxt in zip(words, words[1:] + [""])):
            print("pixellib: note: the word after --ray is taken for the cluster's address: "
                  "put --ray after the inputs, or write --ray=ADDRESS", file=sys.stderr)
        dashed = [w for w in words if w.startswith("-") and w != "-" and os.path.exists(w)]
        if code == 2 and dashed:  # argparse took a file for an option
            print(f"pixellib: note: {dashed[0]!r} is a file, but a word starting with '-' is "
                  f"read as an option: write ./{dashed[0]}", file=sys.stderr)
        return code
    try:
        with _stop_on_signals(), _messages_for_a_terminal():
            return args.func(args)
    except KeyboardInterrupt:
        print("pixellib: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `pixellib info x | head`: the reader left; stop quietly
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except BATCH_SKIPPED as e:  # our errors and file-system errors: one line, no traceback
        print(f"pixellib: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


def _check_words(parser: argparse.ArgumentParser, args, words: list[str],
                 extra: list[str]) -> None:
    """What argparse lets pass: inputs after an option (``segment a.jpg --boxes b.jpg``;
    argparse refused ``b.jpg`` with the top-level usage) are inputs; an unknown option is
    refused by its command, with the nearest option named; an option given twice is
    refused (argparse kept the last: ``--classes umbrella --classes person`` kept person
    alone, and two ``--effect``s one)."""
    import difflib

    sub = parser._subparsers._group_actions[0].choices[args.command]  # noqa: SLF001
    options = {o: a for a in sub._actions for o in a.option_strings}  # noqa: SLF001
    if "--" in extra:  # what follows it is inputs, whatever they look like
        cut = extra.index("--")
        extra, after = extra[:cut], extra[cut + 1:]
    else:
        after = []
    stray = [w for w in extra if w.startswith("-") and w != "-"]
    if stray:
        near = difflib.get_close_matches(stray[0].split("=", 1)[0], list(options), n=1)
        sub.error(f"unrecognized option {stray[0]!r}"
                  + (f": did you mean {near[0]}?" if near else ""))
    if extra or after:
        if not isinstance(getattr(args, "inputs", None), list):
            sub.error(f"unrecognized arguments: {' '.join(extra + after)}")
        args.inputs += extra + after
    seen: dict[str, list[str]] = {}
    for word in words[words.index(args.command) + 1:]:
        if word == "--":
            break
        name = word.split("=", 1)[0] if word.startswith("--") else word[:2]
        action = options.get(name)
        if isinstance(action, argparse._StoreAction):  # noqa: SLF001 - one value options
            seen.setdefault(action.option_strings[-1], []).append(word)
    for option, given in seen.items():
        if len(given) > 1:
            hint = " (several classes: --classes person,car)" if option == "--classes" else ""
            sub.error(f"{option} given {len(given)} times; give it once{hint}")


def _stand_in_for_closed_streams() -> None:
    """Give a closed stdout or stderr (``>&-``, ``2>&-``: Python makes it None) a writer
    into nothing: progress bars and uvicorn's log set-up failed on None, and a batch wrote
    nothing. The command owns its process."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


class _TqdmLines(logging.Handler):
    """The library's warnings as ``pixellib: warning: ...`` lines on stderr, written between
    progress-bar updates (a bare print glued them onto the bar's line)."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            text = f"pixellib: {record.levelname.lower()}: {record.getMessage()}"
            if record.exc_info:  # a server's 500: the traceback is what its operator needs
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            tqdm.write(text, file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must not end the command
            self.handleError(record)


@contextlib.contextmanager
def _messages_for_a_terminal():
    """While a command runs: the library's log warnings as one ``pixellib: warning:`` line
    each, clear of the progress bars, and OpenCV's own log (``[ WARN:0@...] global
    grfmt_tiff.cpp ...``, next to the error that says the same in one line) silenced, and so
    is Pillow's ``DecompressionBombWarning`` (its own 89-megapixel mark, which calls a large
    photo an attack: the limit that applies is ``$PIXELLIB_MAX_PIXELS``'s, and an image over
    it is refused with an error naming it). The command owns its process; all are restored
    afterwards."""
    from cv2.utils import logging as cv_log
    from PIL import Image

    log = logging.getLogger("pixellib")
    handler = _TqdmLines(logging.WARNING)
    previous = (log.propagate, log.level, cv_log.getLogLevel())
    log.addHandler(handler)
    log.propagate = False
    if log.level == logging.NOTSET:
        log.setLevel(logging.WARNING)
    cv_log.setLogLevel(cv_log.LOG_LEVEL_FATAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
            yield
    finally:
        log.removeHandler(handler)
        log.propagate, level, cv_level = previous
        log.setLevel(level)
        cv_log.setLogLevel(cv_level)


@contextlib.contextmanager
def _stop_on_signals():
    """While a command runs, SIGTERM (a job scheduler, ``timeout``, ``kill``) and SIGHUP (the
    terminal or ssh session went away) unwind like an exception, so that half-written outputs
    are deleted as on Ctrl-C (by default the process would die on the spot, leaving its
    hidden temporary files); exit status 143 or 129. The command owns its process; the
    previous handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        print(f"pixellib: stopped by {signal.Signals(signum).name}", file=sys.stderr)
        raise SystemExit(128 + signum)

    # SIGHUP too: the terminal closed or the ssh session dropped (exit status 129). A signal
    # the process was started ignoring (`nohup`) stays ignored.
    signals = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None))
               if s is not None and signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, stop) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# ----------------------------------------------------------------------------- segment


def _cmd_segment(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..media.images import resolve_max_pixels

    resolve_max_pixels()  # a bad $PIXELLIB_MAX_PIXELS: once, before any work (not per image)
    if args.ray is not None:
        from .ray_job import run_ray

        return run_ray(args)
    started = time.perf_counter()
    jobs = outputs.prepare(plan_jobs(args.inputs, args.output), args)
    stats = _Stats()
    from .record import DoneRecord

    record = DoneRecord(args)
    if args.skip_existing:
        done = _already_done(jobs, record)
        todo = [j for j, d in zip(jobs, done) if not d]
        stats.skipped = len(jobs) - len(todo)
        if args.coco and stats.skipped:  # the skipped inputs keep their entries
            skipped = [j for j, d in zip(jobs, done) if d]
            stats.coco.update(_previous_coco(Path(args.coco), skipped))
    else:
        todo = jobs
    if todo:
        if (args.extract or args.coco or args.cutouts or args.masks) and any(
                j.video for j in todo):
            print("pixellib: warning: --extract, --coco, --cutouts and --masks apply to images; "
                  "videos are only annotated", file=sys.stderr)
        if args.feather and args.effect is None:
            print("pixellib: warning: --feather softens the border of an --effect; without "
                  "one it changes nothing", file=sys.stderr)
        if args.track and not any(j.video for j in todo):
            print("pixellib: warning: --track follows objects across a video's frames; the "
                  "images are segmented each on its own", file=sys.stderr)
        # before the model runs on them all (an output file that may be written is written
        # in place, even in a folder that may not be)
        _check_writable(todo, args)
        predictor = _load_predictor(args)
        images = [j for j in todo if not j.video]
        outcomes = _image_outcomes(predictor, images, args, record, stats)
        with tqdm(outcomes, total=len(images), unit="img", disable=len(images) <= 1,
                  file=sys.stderr) as bar:
            try:
                for job, (det, error) in bar:
                    if error is None:
                        _count_image(job, det, args, stats)
                    else:
                        _report_failure(job, error, stats, bar)
                for job in (j for j in todo if j.video):
                    counts, error = _attempt(_segment_video, predictor, job, args)
                    if error is None:
                        record.note(job)
                        stats.videos += 1
                        stats.frames += counts[0]
                        stats.objects += counts[1]
                    else:
                        _report_failure(job, error, stats, None)
            except BaseException:  # Ctrl-C, SIGTERM: keep the detections of what was done
                outcomes.close()  # the outputs still being written are finished and noted
                if args.coco and stats.coco:
                    _keep_coco_on_stop(Path(args.coco), jobs, stats, record)
                raise
    if args.coco and (todo or not Path(args.coco).exists()):  # nothing done: left as it is
        # a failed input's earlier output is left in place: so is its entry
        earlier = _earlier_coco(Path(args.coco), jobs, stats, record) if stats.failed else {}
        _write_coco(Path(args.coco), {**earlier, **stats.coco}, [str(j.source) for j in jobs])
    print(_summary(stats, time.perf_counter() - started))
    if stats.no_object:
        from ..wording import counted

        names = (", ".join(map(shown_name, stats.no_object[:5]))
                 + (", ..." if len(stats.no_object) > 5 else ""))
        print(f"pixellib: warning: no object found (or selected) in "
              f"{counted(len(stats.no_object), 'image')}, so --effect "
              f"{args.effect.name} left only background there: {names}", file=sys.stderr)
    if stats.failed:
        print(f"pixellib: warning: {len(stats.failed)} failed: "
              f"{', '.join(shown_name(name) for name in stats.failed)}", file=sys.stderr)
    # "Every input failed": those --skip-existing found done did not (a resumed folder whose
    # only inputs left are its unreadable ones ends as its first run did).
    succeeded = stats.images + stats.videos + stats.skipped
    return 1 if stats.failed and (args.strict or succeeded == 0) else 0


def _extra_folders(args) -> set[Path]:
    """The other places the command writes: the --coco file's folder, --cutouts, --masks."""
    places = ({Path(args.coco).expanduser().absolute().parent}
              if args.coco and not writable_file(args.coco) else set())  # else in place
    return places | {Path(f).expanduser() for f in (args.cutouts, args.masks) if f}


def _check_writable(todo: list[Job], args) -> None:
    """Refuse, before any work, output folders nothing can be written in and output files
    that may not be written (read-only): every such output would fail, after the model had
    run on its input. An existing output that may be written is written even in a folder
    that may not be (in place), unless more is written beside it (a batch folder's record,
    --extract's folder)."""
    for path in [j.output for j in todo] + ([Path(args.coco)] if args.coco else []):
        unwritable = unwritable_file(path)
        if unwritable:
            raise InvalidArgumentError(f"cannot write {str(path)!r}: {unwritable[1]}")
    folders = {j.output.parent for j in todo
               if j.record is not None or args.extract or not writable_file(j.output)}
    for folder in sorted(folders | _extra_folders(args)):
        problem = unwritable_folder(folder)
        if problem:
            raise InvalidArgumentError(f"cannot write outputs in {problem}")


def _already_done(jobs: list[Job], record) -> list[bool]:
    """For ``--skip-existing``: whether each job's output exists and the folder's record
    vouches for it (:mod:`pixellib.cli.record`); a folder without a record keeps the plain
    rule, and its existing outputs are entered into a new record as they are."""
    done, redone = [], []
    for job in jobs:
        if not job.output.exists():
            done.append(False)
            continue
        vouched = record.vouches(job)
        if vouched is None and job.record is not None:
            record.note(job)  # adopted: an older pixellib's output
        done.append(vouched is not False)
        if vouched is False:
            redone.append(shown_name(job.output))
    if redone:
        print(f"pixellib: warning: {len(redone)} existing output(s) were not made from their "
              "input as it is now, with these options (inputs came, went or changed, so names "
              "moved, or the options changed): made again: "
              f"{', '.join(redone[:3])}{', ...' if len(redone) > 3 else ''}", file=sys.stderr)
    return done


def check_device_option(device: str) -> None:
    """Refuse a ``--device`` the model cannot run on here, naming the option."""
    from ..predictor import checked_device

    try:
        checked_device(device)
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"invalid --device {device!r}: {e}") from None


def _load_predictor(args: argparse.Namespace):
    from ..checkpoint.hub import MODEL_URLS, cached_model_path, model_url, resolve_model
    from ..predictor import Predictor

    check_device_option(args.device)  # before any download
    key = args.model.strip().lower()
    if not Path(args.model).exists() and key in MODEL_URLS and not cached_model_path(key).is_file():
        print(f"downloading {key} from {model_url(key)} (first use)", file=sys.stderr)
    # The command owns its process: heap reuse is on (PIXELLIB_NO_HEAP_REUSE=1 turns it off).
    return Predictor(resolve_model(args.model), speed=args.speed, confidence=args.confidence,
                     device=args.device, heap_reuse=True)


def _attempt(fn, predictor, job: Job, args):
    """``(fn(...), None)``, or ``(None, error)`` for a bad input: the batch goes on."""
    try:
        return fn(predictor, job, args), None
    except BATCH_SKIPPED as e:
        return None, e


def _report_failure(job: Job, error: BaseException, stats: _Stats, bar) -> None:
    stats.failed.append(str(job.source))
    message = (f"pixellib: warning: skipped {shown_name(job.source)}: "
               f"{' '.join(str(error).split())}")
    if bar is not None and not bar.disable:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def _image_outcomes(predictor, jobs: list[Job], args, record, stats):
    """``(job, (detections, None))`` or ``(job, (None, error))`` per image job, in order:
    :func:`pixellib.runtime.pipeline.run_batch` (several images at once with
    ``PIXELLIB_BATCH_WORKERS`` > 1, else reading ahead and writing behind the model where that
    pays)."""
    from ..media.images import read_image
    from ..runtime.pipeline import run_batch

    done = run_batch(jobs, lambda job: read_image(job.source),
                     lambda job, image: (image, predictor(image, classes=args.classes)),
                     lambda job, found: _finish_image(job, *found, args, record, stats),
                     device=predictor.device, skip=BATCH_SKIPPED)
    for job, outcome in done:
        yield job, (outcome.value, outcome.error)


def _finish_image(job: Job, image, det, args, record=None, stats: _Stats | None = None):
    """Draw and write one image's outputs, keep its ``--coco`` entry, then note it in the
    folder's record (at once, in the thread that wrote it: a noted output always has its
    entry); its detections."""
    from ..media.images import write_image

    drawn = outputs.render(image, det, args)
    # A full disk, Ctrl-C: the object files of an earlier run, removed or replaced on the
    # way, are put back with its output, and this run's half is removed.
    group = Rollback()
    with all_or_nothing(group):
        outputs.clear_previous_extras(job, args, group)
        if args.extract:
            from ..export import extract_objects, save_extracts

            from_box = args.extract == "box"
            crops = extract_objects(image, det.masks, _int_boxes(det), from_box=from_box)
            save_extracts(crops, job.output.with_name(f"{job.output.stem}_extracts"),
                          from_box=from_box, rollback=group)
        outputs.save_extras(image, det, job, args, group)
        write_image(job.output, drawn)  # last: an existing output means the job is complete
    if args.coco and stats is not None:
        from ..export import to_coco_json

        stats.coco[str(job.source)] = to_coco_json(det, 1, str(job.source))
    if record is not None:
        record.note(job)
    return det


def _count_image(job: Job, det, args, stats: _Stats) -> None:
    """Book-keeping for a finished image, in input order (COCO ids follow it)."""
    stats.images += 1
    stats.objects += len(det)
    if len(det) == 0 and args.effect is not None and not args.effect.on_objects:
        stats.no_object.append(str(job.output))


def _segment_video(predictor, job: Job, args) -> tuple[int, int]:
    """Segment every frame into the output video (the shared frame loop); ``(frames,
    objects)``."""
    from ..media.video import run_frames
    from ..runtime.pipeline import overlap_enabled

    tracker = None
    if args.track:
        from ..media.tracking import Tracker

        tracker = Tracker()
    objects = 0

    outputs.check_video(job, args)

    def step(frame, index):
        nonlocal objects
        det, drawn = _segment(predictor, frame, args, tracker)
        objects += len(det)
        return det, drawn

    # --strict: a video cut short (fewer frames than it declares) fails, as a bad photo does
    _, frames = run_frames(job.source, step, output=job.output,
                           progress=shown_name(job.source.name),
                           overlap=overlap_enabled(predictor.device), strict=args.strict)
    return frames, objects


def _segment(predictor, image, args, tracker=None):
    """Detections (filtered by --classes, before the mask head: other classes cost no mask;
    with a tracker, carrying track ids, which the drawing follows) and the output picture of
    ``image``."""
    det = predictor(image, classes=args.classes)
    if tracker is not None:
        det = tracker.update(det)
    return det, outputs.render(image, det, args)


def _int_boxes(det):
    import numpy as np

    return det.boxes.astype(np.int64)  # PixelLib truncates float boxes (docs/design.md)


def _write_coco(path: Path, per_image: dict[str, dict], order: list[str]) -> None:
    """Merge per-image COCO dicts in input order (image and annotation ids renumbered) and
    write them atomically."""
    import json

    from ..export import to_coco_json
    from ..media.files import write_text
    from ..structures import Detections

    images, annotations = [], []
    for name in order:
        record = per_image.get(name)
        if record is None:  # failed, or skipped without an entry in the earlier file
            continue
        image_id = len(images) + 1
        images += [{**image, "id": image_id} for image in record["images"]]
        for ann in record["annotations"]:
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": image_id})
    categories = to_coco_json(Detections.empty((1, 1)))["categories"]
    text = json.dumps({"images": images, "annotations": annotations, "categories": categories})
    write_text(path, text)


def _coco_entries(path: Path, jobs: list[Job]) -> dict[str, dict]:
    """``{input as named now: {"images": [...], "annotations": [...]}}`` from a COCO file an
    earlier run wrote, for the ``jobs``' inputs it holds, matched by real path (the earlier
    run may have named the folder otherwise; ``file_name`` takes this run's spelling).
    Raises ``OSError`` / ``ValueError`` / ``KeyError`` / ``TypeError`` for a file that is
    not one."""
    data = parse_json(path.read_text(encoding="utf-8"))
    images, annotations = data["images"], data["annotations"]
    wanted = {os.path.realpath(j.source): str(j.source) for j in jobs}
    kept = {}
    for image in images:
        name = wanted.get(os.path.realpath(image["file_name"]))
        if name is None:  # a relative name from another working folder: its unique tail
            tail = os.sep + os.path.normpath(image["file_name"]).lstrip("." + os.sep)
            matches = [n for real, n in wanted.items() if real.endswith(tail)]
            name = matches[0] if len(matches) == 1 else None
        if name is not None and name not in kept:
            kept[name] = {"images": [{**image, "file_name": name}], "annotations": []}
    ids = {kept[name]["images"][0]["id"]: name for name in kept}
    for ann in annotations:
        if ann["image_id"] in ids:
            kept[ids[ann["image_id"]]]["annotations"].append(ann)
    return kept


def _keep_coco_on_stop(path: Path, jobs: list[Job], stats: _Stats, record) -> None:
    """On a stop: write ``--coco`` with the images finished, and the entries the file
    already held for inputs not reached whose outputs the record vouches for (made from
    them, with these options)."""
    earlier = _earlier_coco(path, jobs, stats, record)
    _write_coco(path, {**earlier, **stats.coco}, [str(j.source) for j in jobs])
    kept = f", and the {len(earlier)} an earlier run made with these options" if earlier else ""
    print(f"pixellib: --coco {str(path)!r} holds the {len(stats.coco)} image(s) finished before "
          f"the stop{kept}; --skip-existing finishes it", file=sys.stderr)


def _earlier_coco(path: Path, jobs: list[Job], stats: _Stats, record) -> dict[str, dict]:
    """The entries the ``--coco`` file already holds for the image inputs this run has none
    for, whose outputs are still there: those that failed (a failure leaves the earlier
    output in place, and so its entry), and those not reached before a stop whose outputs
    the record vouches for (made from them, with these options)."""
    failed = set(stats.failed)
    try:
        without = [j for j in jobs if not j.video and str(j.source) not in stats.coco
                   and j.output.exists()
                   and (str(j.source) in failed or record.vouches(j))]
        return _coco_entries(path, without) if without else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # no earlier file (or not one we wrote), or no readable record


def _previous_coco(path: Path, skipped: list[Job]) -> dict[str, dict]:
    """The entries an earlier run wrote into the ``--coco`` file for the inputs
    ``--skip-existing`` skips (matched as :func:`_coco_entries` matches them), so that the
    rewritten file keeps them. A file that is not COCO JSON is refused before any work: it
    would be overwritten."""
    names = {str(j.source) for j in skipped}
    if not path.exists():
        print(f"pixellib: warning: --coco {str(path)!r} does not exist, so the {len(names)} "
              "skipped inputs have no entries in it; run without --skip-existing to include "
              "them", file=sys.stderr)
        return {}
    try:
        kept = _coco_entries(path, skipped)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        why = f"no {exc} field" if isinstance(exc, KeyError) else " ".join(str(exc).split())
        raise InvalidArgumentError(
            f"--coco {str(path)!r} is not a COCO file an earlier run wrote ({why}); with "
            "--skip-existing its entries for the skipped inputs are kept, so give that file, "
            "or another name") from None
    missing = sorted(names - kept.keys())
    if missing:
        print(f"pixellib: warning: --coco {str(path)!r} has no entry for {len(missing)} skipped "
              f"input(s) (first: {missing[0]!r}); run without --skip-existing to include them",
              file=sys.stderr)
    return kept


def _summary(stats: _Stats, seconds: float) -> str:
    from ..wording import counted

    parts = [counted(stats.images, "image")]
    if stats.videos:
        parts.append(f"{counted(stats.videos, 'video')} ({counted(stats.frames, 'frame')})")
    parts += [counted(stats.objects, "object"), f"{len(stats.failed)} failed"]
    if stats.skipped:
        parts.append(f"{stats.skipped} skipped")
    return ", ".join(parts) + f", {seconds:.1f} s"


# ----------------------------------------------------------------------------- models


def _cmd_download(args: argparse.Namespace) -> int:
    from ..checkpoint.hub import cached_model_path, download_model, model_url

    path = cached_model_path(args.name)
    if path.is_file() and not args.force:
        print(f"{args.name} is already downloaded: {path}")
        return 0
    print(f"downloading {args.name} from {model_url(args.name, args.url)}", file=sys.stderr)
    print(download_model(args.name, url=args.url))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from ..checkpoint.hub import resolve_model
    from ..checkpoint.state_dict import inspect_checkpoint

    info = inspect_checkpoint(resolve_model(args.model, download=False))
    renamed, ignored = info.report.renamed, info.report.ignored
    print(f"file: {info.path}")
    print(f"architecture: {info.arch}")
    print(f"parameters: {info.num_parameters:,}")
    print(f"renamed keys: {len(renamed)}")
    for old, new in sorted(renamed.items()):
        print(f"  {old} -> {new}")
    print(f"ignored keys: {len(ignored)}")
    for key in sorted(ignored):
        print(f"  {key}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from ..checkpoint.hub import resolve_model
    from ..checkpoint.state_dict import convert_checkpoint

    src, dst = resolve_model(args.src, download=False), Path(args.dst)
    if dst.suffix.lower() != ".safetensors":
        raise InvalidArgumentError(f"output {str(dst)!r} must end in .safetensors")
    if dst.exists() and real_path(dst) == real_path(src):
        raise InvalidArgumentError(f"output {str(dst)!r} is the input itself")
    convert_checkpoint(src, dst)
    print(f"wrote {dst}")
    return 0
