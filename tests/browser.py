"""Headless Chromium for the browser tests: cleaning up after it."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path


def remove_profile(profile: Path | str) -> None:
    """Delete a Chromium ``--user-data-dir`` and the folder Chromium made in the temp dir for
    its singleton socket, which the profile only links to (a Chromium that is terminated or
    killed leaves that folder behind: one per test run)."""
    with contextlib.suppress(OSError):
        folder = Path(os.readlink(Path(profile) / "SingletonSocket")).parent
        if (folder.name.startswith("org.chromium.Chromium.")
                and folder.parent == Path(tempfile.gettempdir())):
            shutil.rmtree(folder, ignore_errors=True)
    # The browser's helper processes can outlive it by a moment and write into the profile
    # again (a "Network Persistent State" file): remove it until it stays gone.
    deadline = time.monotonic() + 5
    while True:
        shutil.rmtree(profile, ignore_errors=True)
        time.sleep(0.2)
        if not os.path.exists(profile) or time.monotonic() > deadline:
            break
