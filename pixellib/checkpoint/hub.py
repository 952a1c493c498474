"""Released PixelLib model files: where they come from, where they are cached, how they are fetched.

A download streams to a temporary name inside the cache folder (the atomic-write helper,
:func:`pixellib.media.files.atomic_path`), checks the byte count against ``Content-Length``,
and loads the file (right keys and shapes, via
:func:`pixellib.checkpoint.state_dict.inspect_checkpoint`) before it replaces the cached name.
A failed download leaves nothing behind and raises
:class:`~pixellib.errors.ModelDownloadError` naming the URL and the cause.

Why not ``torch.hub.download_url_to_file``: it also streams to a temporary file with a
progress bar, but it does not compare the bytes received with ``Content-Length`` (a
connection closed early leaves a short file that it moves into place), it has no timeout, and
its network errors are urllib's, not one error type naming the URL. Those checks are the point
of this module, so the few lines of streaming stay here.
"""
from __future__ import annotations

import errno
import http.client
import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ..config import MODEL_ARCHS, MODEL_URLS
from ..errors import ModelDownloadError, ModelNotFoundError
from ..media.files import atomic_path

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TIMEOUT_S = 60


def cache_dir() -> Path:
    """``$PIXELLIB_HOME`` if set, else ``$XDG_CACHE_HOME/pixellib``, else ``~/.cache/pixellib``."""
    home = os.environ.get("PIXELLIB_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pixellib"


def model_filename(name: str) -> str:
    """The released file name, e.g. ``pointrend_resnet50.pkl``."""
    return MODEL_URLS[_check_name(name)].rsplit("/", 1)[-1]


def cached_model_path(name: str) -> Path:
    """Where the model ``name`` lives once downloaded (it may not exist yet)."""
    return cache_dir() / model_filename(name)


def model_url(name: str, url: str | None = None) -> str:
    """``url`` if given, else ``$PIXELLIB_MODEL_URL_<NAME>``, else the released file's URL."""
    name = _check_name(name)
    if url is not None and not str(url).strip():  # '' fetched the default file instead
        raise ModelDownloadError("the model URL given is empty; give an https:// or file:// "
                                 "address, or leave it out for the released file")
    return url or os.environ.get(f"PIXELLIB_MODEL_URL_{name.upper()}") or MODEL_URLS[name]


def download_model(name: str, *, url: str | None = None, progress: bool = True) -> Path:
    """Fetch the released model ``name`` into :func:`cache_dir` and return its path.

    Always downloads (use :func:`resolve_model` to reuse the cache). The file is validated
    before it replaces any cached copy; on failure nothing is left in the cache folder.
    """
    name = _check_name(name)
    url = model_url(name, url)
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelDownloadError(f"cannot create the model cache folder {folder}: {e}") from e
    final = folder / model_filename(name)
    with atomic_path(final) as tmp:
        with open(tmp, "xb") as out:
            _fetch(url, out, progress=progress, dest=final)
        _validate(tmp, name, url)
    logger.info("downloaded %s to %s", url, final)
    return final


def resolve_model(name_or_path: str | os.PathLike, *, download: bool = True,
                  progress: bool = True) -> Path:
    """Path of a model given as a file path or as ``"resnet50"`` / ``"resnet101"``.

    An existing path is returned as is. A known name maps to the cached file, which is
    downloaded on first use when ``download`` is true. Anything else raises
    :class:`~pixellib.errors.ModelNotFoundError` saying how to get a model.
    """
    path = Path(name_or_path).expanduser()
    try:
        os.lstat(path)  # there, or a link: a broken or looping one is named when read
        return path
    except (ValueError, OSError) as exc:
        from .files import unusable_name  # here: files imports torch

        unusable = unusable_name(path, exc)
        if unusable is not None:
            raise unusable from None
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            return path  # no permission...: said when it is read
    key = str(name_or_path).strip().lower()
    if key in MODEL_URLS:
        cached = cached_model_path(key)
        if cached.is_file():
            return cached
        if download:
            return download_model(key, progress=progress)
        raise ModelNotFoundError(
            f"model {key!r} is not in the cache ({cached}); run `pixellib download {key}`"
        )
    hint = ""
    for known in MODEL_URLS:
        if path.name == model_filename(known):
            cached = cached_model_path(known)
            if path.parent == Path(".") and cached.is_file():
                # PixelLib's scripts name the released file bare; `pixellib download` put it
                # in the cache.
                logger.info("%s is not in %s: using the downloaded %s", path, Path.cwd(),
                            cached)
                return cached
            hint = f" (to use the released file, pass {known!r}: it is downloaded and cached)"
    if not download:  # the Python API: names mean the cache, filled by `pixellib download`
        raise ModelNotFoundError(
            f"model file not found: {str(name_or_path)!r}. Pass a .pkl/.pth/.safetensors "
            f"path, or {' / '.join(repr(k) for k in MODEL_URLS)} for a released model once "
            f"`pixellib download {next(iter(MODEL_URLS))}` (or "
            f"{', '.join(list(MODEL_URLS)[1:])}) has put it in {cache_dir()} (set "
            f"PIXELLIB_HOME to change the folder); PixelLib's releases: "
            f"{', '.join(MODEL_URLS.values())}"
        )
    raise ModelNotFoundError(
        f"model file not found: {str(name_or_path)!r}{hint}. Pass a .pkl/.pth/.safetensors "
        f"path, or one of {', '.join(MODEL_URLS)} to download the released model into "
        f"{cache_dir()} (set PIXELLIB_HOME to change the folder)"
    )


def _check_name(name: str) -> str:
    key = str(name).strip().lower()
    if key not in MODEL_URLS:
        raise ModelNotFoundError(
            f"unknown model name {name!r}: expected one of {', '.join(MODEL_URLS)}"
        )
    return key


def _fetch(url: str, out, *, progress: bool, dest: Path) -> None:
    """Stream ``url`` into the open binary file ``out`` (which becomes ``dest``); raise
    ModelDownloadError on any failure."""
    from ..runtime.progress import ProgressBar

    try:
        request = urllib.request.Request(url, headers={"User-Agent": "pixellib"})
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            header = response.headers.get("Content-Length")
            expected = int(header) if header and header.isdigit() else None
            received = 0
            with ProgressBar(total=expected, unit="B", unit_scale=True, unit_divisor=1024,
                             desc=dest.name, disable=not progress, file=sys.stderr) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (ValueError, http.client.InvalidURL) as e:  # "unknown url type", "Invalid IPv6
        # URL" (a traceback before), a space in the host (an HTTPException: "interrupted")
        raise ModelDownloadError(f"cannot download {url!r}: not a URL ({e}); give an "
                                 "https:// or file:// address") from None
    except urllib.error.HTTPError as e:
        raise ModelDownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise ModelDownloadError(
            f"download of {url} failed: {e.reason} (offline? fetch the file elsewhere and "
            f"pass its path as the model, or copy it to {str(dest)!r})"
        ) from e
    except (http.client.HTTPException, OSError) as e:
        raise ModelDownloadError(
            f"download of {url} was interrupted: {type(e).__name__}: {e}"
        ) from e
    if expected is not None and received != expected:
        raise ModelDownloadError(
            f"download of {url} was interrupted: got {received} of {expected} bytes"
        )
    if received == 0:
        raise ModelDownloadError(f"download of {url} failed: the server sent an empty file")


def _validate(path: Path, name: str, url: str) -> None:
    """Load the downloaded file; it must be a PointRend checkpoint of the expected architecture."""
    from . import state_dict as weights

    try:
        info = weights.inspect_checkpoint(path)
    except Exception as e:  # any failure to load means the download is not a usable model
        reason = str(e).replace(f"{path}: ", "").replace(str(path), "the file")
        raise ModelDownloadError(  # (its temporary name is deleted: not named)
            f"the file downloaded from {url} is not a valid PointRend checkpoint: {reason}"
        ) from e
    if info.arch != MODEL_ARCHS[name]:
        raise ModelDownloadError(
            f"the file downloaded from {url} holds a {info.arch} model, "
            f"but {name!r} must be {MODEL_ARCHS[name]}"
        )
