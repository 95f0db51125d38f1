"""Cut a segment out of a source video with ffmpeg: frame-accurate re-encode or keyframe-snapped stream copy.

ffmpeg streams the segment from disk to disk, so memory stays flat whatever the segment's length.
Outputs are written to a hidden temporary file and renamed into place only once verified.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import ffmpeg
from pydantic import BaseModel, Field

from hivau.schemas.records import CutMode, SourceVideo
from hivau.tasks.build.media import last_error_line, require_binary, run_quiet
from hivau.tasks.build.probe import read_packets
from hivau.tasks.build.segments import keyframe_at_or_before
from hivau.workspace import DiskFullError, Workspace, atomic_write_json, disk_full_guard, is_disk_full


class CutError(RuntimeError):
    pass


class CutSettings(BaseModel):
    """Encoder settings for `accurate` mode (`copy` never re-encodes)."""

    model_config = {"frozen": True}
    crf: int = Field(20, ge=0, le=51, description="x264 constant rate factor: lower is better and bigger")
    # superfast: about 2x the speed of veryfast for a larger file at the same CRF (see BENCHMARKS.md)
    preset: str = Field("superfast", description="x264 preset (ultrafast ... veryslow)")
    threads: int = Field(0, ge=0, description="encoder threads; 0 lets ffmpeg choose")
    timeout_s: float = Field(3600, gt=0, description="give up on one segment after this long")


@dataclass(frozen=True)
class CutResult:
    path: str
    mode: CutMode
    start_s: float  # actual start in the source's timeline
    end_s: float
    n_frames: int


def partial_path(dst: Path) -> Path:
    return dst.with_name(f".{dst.stem}.part{dst.suffix}")


def copy_start(start: float, keyframe_times: Sequence[float]) -> float:
    """Stream copy begins at the keyframe at or before the requested start."""
    return keyframe_at_or_before(start, keyframe_times)


def build_command(src: str, tmp: str, start: float, end: float, mode: CutMode, settings: CutSettings) -> list[str]:
    """The ffmpeg command line (video stream only; audio and subtitles are not part of the dataset)."""
    stream = ffmpeg.input(src, ss=f"{start:.6f}")
    common = {"t": f"{end - start:.6f}", "map": "0:v:0", "an": None, "sn": None, "dn": None,
              "map_metadata": -1, "movflags": "+faststart"}
    if mode == "copy":
        out = stream.output(tmp, c="copy", avoid_negative_ts="make_zero", **common)
    else:
        # Even dimensions for yuv420p; ffmpeg auto-rotates when re-encoding, so outputs are upright.
        out = stream.output(tmp, vcodec="libx264", preset=settings.preset, crf=settings.crf, pix_fmt="yuv420p",
                            vf="scale=trunc(iw/2)*2:trunc(ih/2)*2", threads=settings.threads, **common)
    return [require_binary("ffmpeg"), "-nostdin", "-v", "error", "-y", "-progress", "pipe:1", "-nostats",
            *out.get_args()]


def frames_written(progress: str) -> Optional[int]:
    """The frame count of ffmpeg's last `-progress` block: what the cut wrote, without probing the file."""
    frames = [ln.split("=", 1)[1] for ln in progress.splitlines() if ln.startswith("frame=")]
    try:
        return int(frames[-1]) if frames else None
    except ValueError:
        return None


def written_span(seek: float, n_frames: int, fps: float) -> tuple[float, float]:
    """[start, end] on the source's clock of n constant-rate frames written from `seek`."""
    return round(seek, 6), round(seek + n_frames / fps, 6)


def cut_segment(src: str, dst: str | Path, start: float, end: float, mode: CutMode, fps: float,
                keyframe_times: Sequence[float] = (), settings: CutSettings = CutSettings(),
                is_vfr: bool = False, before_rename: Optional[Callable[[CutResult, int], None]] = None) -> CutResult:
    """Cut [start, end] of `src` into `dst` atomically; returns the boundaries actually written.

    ffmpeg's own progress report says how many frames it wrote; only a variable-rate source's output is
    probed again, since there the frame count does not give the span. `before_rename(result, size)` runs once
    the cut is whole and before it takes its name (the resume record is written there).
    """
    dst = Path(dst)
    tmp = partial_path(dst)
    seek = copy_start(start, keyframe_times) if mode == "copy" else start
    cmd = build_command(src, str(tmp), seek, end, mode, settings)
    with disk_full_guard(dst):
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            out = run_quiet(cmd, timeout=settings.timeout_s)
            # ffmpeg can exit 0 after failing to write its trailer on a full disk: its output is then cut short
            if is_disk_full(out.stderr):
                raise DiskFullError(dst)
            if out.returncode != 0:
                raise CutError(f"ffmpeg failed cutting {Path(src).name} [{start:.3f}, {end:.3f}]: "
                               f"{last_error_line(out.stderr)}")
            n_frames = frames_written(out.stdout)
            if is_vfr or not fps or n_frames is None:
                times, _ = read_packets(str(tmp))
                n_frames = len(times)
                span = ((times[-1] - times[0]) + (1.0 / fps if fps else 0.0)) if times else 0.0
                cut_start, cut_end = round(seek, 6), round(seek + span, 6)
            else:
                cut_start, cut_end = written_span(seek, n_frames, fps)
            if not n_frames:
                raise CutError(f"ffmpeg wrote no video frames for {Path(src).name} [{start:.3f}, {end:.3f}]")
            result = CutResult(path=str(dst), mode=mode, start_s=cut_start, end_s=cut_end, n_frames=n_frames)
            if before_rename:
                before_rename(result, tmp.stat().st_size)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
    return result


def _fingerprint(src: str, start: float, end: float, mode: CutMode, settings: CutSettings) -> str:
    stat = Path(src).stat()
    key = [str(Path(src).resolve()), stat.st_size, stat.st_mtime_ns, round(start, 6), round(end, 6), mode]
    if mode == "accurate":
        key += [settings.crf, settings.preset]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def cut_or_resume(ws: Workspace, segment_id: str, dst: Path, video: SourceVideo, start: float, end: float,
                  mode: CutMode, settings: CutSettings) -> tuple[CutResult, bool]:
    """Cut one segment of `video` unless the same cut already finished; returns (result, was_cut_now). The
    result's path is where the cut is: `dst`, or beside it for a re-cut with other times (`recut_path`)."""
    partial_path(dst).unlink(missing_ok=True)  # left by a run killed mid-cut; never a valid output
    fingerprint = _fingerprint(video.path, start, end, mode, settings)
    state_path = ws.segment_state(segment_id)
    state = json.loads(state_path.read_text()) if state_path.is_file() else None
    if state and state.get("fingerprint") == fingerprint:
        done = recorded_path(state, dst)
        # the recorded size guards against a media file a crash left short (the state is not fsynced)
        if done.is_file() and state.get("size") == done.stat().st_size:
            return CutResult(**{**state["result"], "path": str(done)}), False
        target = done  # the same cut, not finished: again, at the same name
    else:
        target = recut_path(dst, fingerprint) if dst.exists() else dst
    partial_path(target).unlink(missing_ok=True)

    def record(result: CutResult, size: int) -> None:
        # written before the cut takes its name: a file at a name always has its record, so a file without one
        # is never a leftover of this run and is never written over
        atomic_write_json(state_path, {"fingerprint": fingerprint, "size": size, "result": result.__dict__},
                          durable=False)

    result = cut_segment(video.path, target, start, end, mode, video.fps, video.keyframe_times, settings,
                         video.is_vfr, before_rename=record)
    return result, True


def recorded_path(state: dict, dst: Path) -> Path:
    """The file a cut record names, beside `dst` (by name: a workspace copied or moved keeps its records)."""
    return dst.with_name(Path(state["result"]["path"]).name)


def cut_path(ws: Workspace, segment_id: str, dst: Path) -> Optional[Path]:
    """Where the segment's latest finished cut is (`dst` or a re-cut beside it); None when it has none on disk."""
    state_path = ws.segment_state(segment_id)
    if not state_path.is_file():
        return None
    path = recorded_path(json.loads(state_path.read_text()), dst)
    return path if path.is_file() else None


def recut_path(dst: Path, fingerprint: str) -> Path:
    """Where a segment cut again with other times goes: never over its earlier file, which the current manifests
    (and the previous set's readers) still name until the new set is linked; a kill in between would otherwise
    leave them describing frames the file no longer holds. The earlier file stays (releases hard-link theirs)."""
    return dst.with_name(f"{dst.stem}~{fingerprint[:8]}{dst.suffix}")
