"""ffmpeg/ffprobe availability and subprocess helpers shared by probe, cut and demo rendering."""

from __future__ import annotations

import shutil
import subprocess
from typing import Sequence

from hivau.stopping import run_child


class MissingBinaryError(RuntimeError):
    pass


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingBinaryError(
            f"`{name}` is not on PATH. Install FFmpeg (Debian/Ubuntu: `apt-get install -y ffmpeg`; "
            f"macOS: `brew install ffmpeg`); `make run` / `make test` do this for you on Debian as root."
        )
    return path


def run_quiet(args: Sequence[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command, capturing output as text; never raises on a non-zero exit (callers decide), but raises
    `Stopped` when a stop (Ctrl-C, SIGTERM) ends it, so a killed ffmpeg is never taken for a broken input."""
    return run_child(args, timeout)


def last_error_line(stderr: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()]
    return (lines[-1] if lines else "no error output")[:limit]
