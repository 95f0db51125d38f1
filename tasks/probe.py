"""Probe a source video with ffprobe: stream facts, exact frame count and keyframe times, health checks."""

from __future__ import annotations

import json
import statistics
from fractions import Fraction
from pathlib import Path
from typing import Optional

from hivau.schemas import reasons
from hivau.schemas.records import SourceVideo
from hivau.tasks.media import last_error_line, require_binary, run_quiet


class ProbeError(Exception):
    """A video that cannot be used; `reason` is one of hivau.schemas.reasons."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _rate(text: Optional[str]) -> Optional[float]:
    try:
        value = Fraction(text)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return float(value) if value > 0 else None


def _rotation(stream: dict) -> int:
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return int(round(float(side["rotation"]))) % 360
    rotate = (stream.get("tags") or {}).get("rotate")
    return int(rotate) % 360 if rotate else 0


def read_packets(path: str, timeout: float = 600) -> tuple[list[float], list[float]]:
    """(sorted presentation times of every video packet, keyframe times), by demuxing only: no decoding."""
    out = run_quiet([require_binary("ffprobe"), "-v", "error", "-select_streams", "v:0",
                     "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0", path], timeout=timeout)
    times, keys = [], []
    for line in out.stdout.splitlines():
        pts, _, flags = line.partition(",")
        if not pts or pts == "N/A":
            continue
        t = float(pts)
        times.append(t)
        if "K" in flags:
            keys.append(t)
    times.sort()
    keys.sort()
    return times, keys


def decodes_at(path: str, t: float, timeout: float = 120) -> bool:
    """Whether one video frame can be decoded at (or just after) time `t`."""
    out = run_quiet([require_binary("ffmpeg"), "-v", "error", "-nostdin", "-ss", f"{max(t, 0):.3f}", "-i", path,
                     "-map", "0:v:0", "-frames:v", "1", "-f", "null", "-", "-progress", "pipe:1"], timeout=timeout)
    frames = [ln.split("=", 1)[1] for ln in out.stdout.splitlines() if ln.startswith("frame=")]
    return out.returncode == 0 and bool(frames) and int(frames[-1]) >= 1


def probe_video(path: str | Path, video_id: str, source_format: str = "none", labels: Optional[list[str]] = None,
                check_decode: bool = True) -> SourceVideo:
    """Probe one file; raise ProbeError with a quarantine reason when it is not a usable video."""
    path = str(path)
    p = Path(path)
    if not p.is_file():
        raise ProbeError(reasons.VIDEO_MISSING, f"{path} does not exist")
    size = p.stat().st_size
    if size == 0:
        raise ProbeError(reasons.VIDEO_EMPTY, f"{path} is a zero-byte file")
    out = run_quiet([require_binary("ffprobe"), "-v", "error", "-print_format", "json",
                     "-show_format", "-show_streams", path])
    if out.returncode != 0:
        err = last_error_line(out.stderr)
        # An MP4 that starts like one (an `ftyp` box) but lacks its index was cut short while being written.
        with p.open("rb") as fh:
            looks_mp4 = fh.read(12)[4:8] == b"ftyp"
        reason = reasons.VIDEO_TRUNCATED if looks_mp4 and "moov atom not found" in out.stderr else reasons.VIDEO_UNREADABLE
        raise ProbeError(reason, f"ffprobe cannot read {p.name}: {err}")
    info = json.loads(out.stdout or "{}")
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not (s.get("disposition") or {}).get("attached_pic")), None)
    if video is None:
        kinds = sorted({s.get("codec_type", "?") for s in streams}) or ["none"]
        raise ProbeError(reasons.VIDEO_NO_VIDEO_STREAM, f"{p.name} has no video stream (streams: {', '.join(kinds)})")

    times, keyframes = read_packets(path)
    if not times:
        raise ProbeError(reasons.VIDEO_TRUNCATED, f"{p.name} has a video stream header but no video packets")
    r_fps, avg_fps = _rate(video.get("r_frame_rate")), _rate(video.get("avg_frame_rate"))
    deltas = [b - a for a, b in zip(times, times[1:]) if b > a]
    median_delta = statistics.median(deltas) if deltas else None
    fps = avg_fps or r_fps or (1 / median_delta if median_delta else 0.0)
    is_vfr = bool(deltas) and (max(deltas) - min(deltas)) > 0.5 * median_delta
    declared_duration = float(video.get("duration") or info.get("format", {}).get("duration") or 0.0)
    stream_start = float(video.get("start_time") or 0.0)
    frame_dur = 1.0 / fps if fps else 0.0
    packet_end = times[-1] - stream_start + frame_dur
    header_frames = int(video.get("nb_frames") or 0)
    # A file cut short keeps its header's claims (duration, frame count) but lacks the packets.
    if (header_frames and len(times) < 0.98 * header_frames - 1) or packet_end < 0.9 * declared_duration - 0.5:
        raise ProbeError(reasons.VIDEO_TRUNCATED,
                         f"{p.name}: header says {header_frames or '?'} frames / {declared_duration:.2f}s, "
                         f"only {len(times)} packets up to {packet_end:.2f}s are present")
    duration = min(declared_duration, packet_end) if declared_duration else packet_end
    if check_decode and not (decodes_at(path, 0.0) and decodes_at(path, keyframes[-1] - stream_start if keyframes else 0.0)):
        raise ProbeError(reasons.VIDEO_UNDECODABLE, f"{p.name}: frames cannot be decoded")
    labels = labels or []
    return SourceVideo(
        video_id=video_id, path=path, source_format=source_format, labels=labels, is_anomaly=bool(labels),
        size_bytes=size, duration_s=round(duration, 6), fps=round(fps, 6), r_fps=r_fps, is_vfr=is_vfr,
        n_frames=len(times), width=int(video.get("width") or 0), height=int(video.get("height") or 0),
        rotation=_rotation(video), codec=video.get("codec_name", ""), pix_fmt=video.get("pix_fmt"),
        has_audio=any(s.get("codec_type") == "audio" for s in streams),
        keyframe_times=[round(k - stream_start, 6) for k in keyframes],
    )
