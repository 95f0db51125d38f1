"""Test helpers: synthetic videos made with real ffmpeg, including ones whose frames encode their index."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def make_video(path: Path, duration: float, fps: float = 30, size: str = "64x48", gop: int | None = None,
               extra: tuple[str, ...] = ()) -> Path:
    """A small H.264 test-pattern video of the given duration and frame rate."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gop_args = ("-g", str(gop)) if gop else ()
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={duration}", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", *gop_args, *extra, str(path))
    return path


def make_index_video(path: Path, n_frames: int, fps: int = 25, gop: int = 25, size=(64, 48)) -> Path:
    """Frame i shows i // 16 and i % 16 as two gray levels 16 apart, so a decoded frame tells its index."""
    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray",
                             "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset", "ultrafast",
                             "-qp", "0", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
                             "-bf", "0", "-pix_fmt", "yuv420p", str(path)], stdin=subprocess.PIPE)
    assert n_frames <= 256
    for i in range(n_frames):
        frame = np.empty((h, w), np.uint8)
        frame[:, : w // 2], frame[:, w // 2:] = (i // 16) * 16, (i % 16) * 16
        proc.stdin.write(frame.tobytes())
    proc.stdin.close()
    assert proc.wait() == 0
    return path


def frame_index(frame: np.ndarray) -> int:
    """Invert make_index_video's encoding from a decoded RGB frame (edges skipped: chroma bleeds there)."""
    w = frame.shape[1]
    high = float(frame[:, 2: w // 2 - 4].mean()) / 16
    low = float(frame[:, w // 2 + 4: -2].mean()) / 16
    return int(round(high)) * 16 + int(round(low))


def make_audio_only(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(path))
    return path


def prefect_cli(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([str(Path(sys.executable).parent / "prefect"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


class served_deployments:
    """`python -m hivau.flows.serve` against a test Prefect server, until `deployment` is registered."""

    def __init__(self, env: dict, deployment: str, log: Path, timeout_s: float = 120):
        self.env, self.deployment, self.log, self.timeout_s = env, deployment, log, timeout_s

    def __enter__(self) -> subprocess.Popen:
        import sys
        import time

        out = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "hivau.flows.serve"], env=self.env, stdout=out,
                                     stderr=out, start_new_session=True)
        deadline = time.time() + self.timeout_s
        while prefect_cli(self.env, "deployment", "inspect", self.deployment).returncode != 0:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.time() < deadline, f"{self.deployment} was not registered by the serve process"
            time.sleep(1)
        return self.proc

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


# what differs between two runs that made the same records: when a review was written, and how long it took
RUN_TIME_FIELDS = frozenset({"created_at", "updated_at", "lead_time_s"})


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in RUN_TIME_FIELDS}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def manifest_digest(workspace: Path) -> dict[str, str]:
    """A digest of each manifest table's rows (in any order, run times left out): equal digests mean two runs
    wrote the same records."""
    import hashlib
    import json

    import pyarrow.parquet as pq

    digests = {}
    for path in sorted((Path(workspace) / "manifests").glob("*.parquet")):
        rows = sorted(json.dumps(_without_times(r), sort_keys=True, default=str) for r in pq.read_table(path).to_pylist())
        digests[path.stem] = hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
    return digests


def annotate(lsc, task: dict, verdict: str, edits: dict[str, str] = {}, timeline=None,
             **fields) -> dict:
    """Submit an annotation the way the editor does: the prediction's regions, some edited, plus a verdict."""
    result = []
    for region in task["predictions"][-1]["result"]:
        region = {k: region[k] for k in ("from_name", "to_name", "type", "value")}
        if region["type"] == "textarea" and region["from_name"] in edits:
            region["value"] = {"text": [edits[region["from_name"]]]}
        if region["type"] == "timelinelabels" and timeline:
            region["value"] = {"ranges": [{"start": timeline[0], "end": timeline[1]}], "timelinelabels": ["event"]}
        result.append(region)
    result.append({"from_name": "verdict", "to_name": "video", "type": "choices", "value": {"choices": [verdict]}})
    return lsc.create_annotation(task["id"], result, **fields)
