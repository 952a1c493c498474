"""Progress bars that leave the process as they found it.

A plain ``tqdm`` bar, even a disabled one, makes a ``multiprocessing.RLock`` on first use,
which fixes the process's multiprocessing start method (an application's later
``multiprocessing.set_start_method("spawn")`` then raises "context has already been set"),
and starts a monitor thread that outlives the call. :class:`ProgressBar` is ``tqdm`` with
tqdm's own thread lock only (bars in several processes may then interleave their lines,
which pixellib never draws) and without the monitor (which only shortens the refresh interval
of a bar whose loop stalls). Where there is no ``sys.stderr`` (a process started with
``2>&-``, a windowed app, some services: Python sets it to None), the bar is off instead of
failing at its first write.
"""
from __future__ import annotations

import sys

from tqdm import tqdm
from tqdm.std import TqdmDefaultWriteLock


class ProgressBar(tqdm):
    """``tqdm`` without process-wide effects (see the module notes)."""

    _lock = TqdmDefaultWriteLock.th_lock
    monitor_interval = 0

    def __init__(self, *args, **kwargs):
        if kwargs.get("file") is None and sys.stderr is None:
            kwargs["disable"] = True
        super().__init__(*args, **kwargs)
