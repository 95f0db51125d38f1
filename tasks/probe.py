"""Probe a source video with one ffprobe pass (stream facts, exact frame count, keyframe times) and a decode check."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

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
    """The display rotation: side data (current ffmpeg) or the older `rotate` tag."""
    value = stream.get("rotation") or stream.get("tag:rotate")
    return int(round(float(value))) % 360 if value else 0


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


# One ffprobe pass gives the streams, the container and every packet's time (demuxing only, no decoding).
PROBE_ENTRIES = ("stream=index,codec_type,codec_name,width,height,r_frame_rate,avg_frame_rate,duration,start_time,"
                 "nb_frames,pix_fmt:stream_disposition=attached_pic:stream_tags=rotate:stream_side_data=rotation:"
                 "format=duration:packet=stream_index,pts_time,flags")


@dataclass
class ProbeOutput:
    streams: list[dict]
    format: dict
    packets: dict[int, tuple[list[float], list[float]]]  # stream index -> (sorted times, keyframe times)


def parse_compact(text: str) -> ProbeOutput:
    """ffprobe's `-of compact` output: `section|key=value|...` lines (flat, cheaper than JSON for packets)."""
    streams, fmt, times, keys = [], {}, {}, {}
    for line in text.splitlines():
        section, _, rest = line.partition("|")
        if section == "packet":
            fields = dict(f.split("=", 1) for f in rest.split("|") if "=" in f)
            pts = fields.get("pts_time", "N/A")
            if pts == "N/A":
                continue
            index, t = int(fields.get("stream_index", 0)), float(pts)
            times.setdefault(index, []).append(t)
            if "K" in fields.get("flags", ""):
                keys.setdefault(index, []).append(t)
        elif section in ("stream", "format"):
            fields = dict(f.split("=", 1) for f in rest.split("|") if "=" in f)
            if section == "stream":
                streams.append(fields)
            else:
                fmt = fields
    packets = {i: (sorted(ts), sorted(keys.get(i, []))) for i, ts in times.items()}
    return ProbeOutput(streams, fmt, packets)


def _number(value: Optional[str]) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def decodes(path: str, times_s: Sequence[float]) -> bool:
    """Whether a frame decodes at each time (in-process with OpenCV: no extra process per video)."""
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            return False
        for t in times_s:
            if t > 0:
                cap.set(cv2.CAP_PROP_POS_MSEC, t * 1000.0)
            ok, frame = cap.read()
            if not ok or frame is None:
                return False
        return True
    finally:
        cap.release()


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
    out = run_quiet([require_binary("ffprobe"), "-v", "error", "-show_entries", PROBE_ENTRIES, "-of", "compact",
                     path])
    if out.returncode != 0:
        err = last_error_line(out.stderr)
        # An MP4 that starts like one (an `ftyp` box) but lacks its index was cut short while being written.
        with p.open("rb") as fh:
            looks_mp4 = fh.read(12)[4:8] == b"ftyp"
        reason = reasons.VIDEO_TRUNCATED if looks_mp4 and "moov atom not found" in out.stderr else reasons.VIDEO_UNREADABLE
        raise ProbeError(reason, f"ffprobe cannot read {p.name}: {err}")
    info = parse_compact(out.stdout)
    streams = info.streams
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and s.get("disposition:attached_pic", "0") == "0"), None)
    if video is None:
        kinds = sorted({s.get("codec_type", "?") for s in streams}) or ["none"]
        raise ProbeError(reasons.VIDEO_NO_VIDEO_STREAM, f"{p.name} has no video stream (streams: {', '.join(kinds)})")

    times, keyframes = info.packets.get(int(video.get("index", 0)), ([], []))
    if not times:
        raise ProbeError(reasons.VIDEO_TRUNCATED, f"{p.name} has a video stream header but no video packets")
    r_fps, avg_fps = _rate(video.get("r_frame_rate")), _rate(video.get("avg_frame_rate"))
    deltas = [b - a for a, b in zip(times, times[1:]) if b > a]
    median_delta = statistics.median(deltas) if deltas else None
    fps = avg_fps or r_fps or (1 / median_delta if median_delta else 0.0)
    is_vfr = bool(deltas) and (max(deltas) - min(deltas)) > 0.5 * median_delta
    declared_duration = _number(video.get("duration")) or _number(info.format.get("duration"))
    stream_start = _number(video.get("start_time"))
    frame_dur = 1.0 / fps if fps else 0.0
    packet_end = times[-1] - stream_start + frame_dur
    header_frames = int(_number(video.get("nb_frames")))
    # A file cut short keeps its header's claims (duration, frame count) but lacks the packets.
    if (header_frames and len(times) < 0.98 * header_frames - 1) or packet_end < 0.9 * declared_duration - 0.5:
        raise ProbeError(reasons.VIDEO_TRUNCATED,
                         f"{p.name}: header says {header_frames or '?'} frames / {declared_duration:.2f}s, "
                         f"only {len(times)} packets up to {packet_end:.2f}s are present")
    duration = min(declared_duration, packet_end) if declared_duration else packet_end
    # the first frame and the last keyframe: a file whose data is damaged fails at one of them
    if check_decode and not decodes(path, [0.0, (keyframes[-1] - stream_start) if keyframes else 0.0]):
        raise ProbeError(reasons.VIDEO_UNDECODABLE, f"{p.name}: frames cannot be decoded")
    labels = labels or []
    return SourceVideo(
        video_id=video_id, path=path, source_format=source_format, labels=labels, is_anomaly=bool(labels),
        size_bytes=size, duration_s=round(duration, 6), fps=round(fps, 6), r_fps=r_fps, is_vfr=is_vfr,
        n_frames=len(times), width=int(_number(video.get("width"))), height=int(_number(video.get("height"))),
        rotation=_rotation(video), codec=video.get("codec_name", ""), pix_fmt=video.get("pix_fmt") or None,
        mtime_ns=p.stat().st_mtime_ns,
        has_audio=any(s.get("codec_type") == "audio" for s in streams),
        keyframe_times=[round(k - stream_start, 6) for k in keyframes],
    )
