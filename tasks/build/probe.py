"""Probe a source video in this process (PyAV: stream facts, exact frame count, keyframe times, a decode check)."""

from __future__ import annotations

import statistics
from fractions import Fraction
from pathlib import Path
from typing import Optional

from hivau.schemas import reasons
from hivau.schemas.records import SourceVideo

# Why not ffprobe: each ffmpeg/ffprobe process costs about as much to start as a stream-copy cut takes
# (Debian's build maps some 200 libraries), so a probe process per video made the probe a ninth of the
# cut stage. PyAV demuxes with FFmpeg's own libraries in-process, in a tenth of the time.


class ProbeError(Exception):
    """A video that cannot be used; `reason` is one of hivau.schemas.reasons."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _rate(value) -> Optional[float]:
    """A stream rate (a Fraction, or None when the container does not know it) as a positive float."""
    try:
        rate = Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return float(rate) if rate > 0 else None


def _open(path: str):
    """A demuxer on `path`."""
    import av

    return av.open(path, metadata_errors="ignore")


def _demux_times(container, stream) -> tuple[list[float], list[float], Optional[str]]:
    """(sorted presentation times of the stream's packets, keyframe times, the error that stopped the demuxer)."""
    import av

    tb = float(stream.time_base)
    times, keys, error = [], [], None
    try:
        for packet in container.demux(stream):
            if packet.pts is None:  # the demuxer's closing empty packet, or a packet with no timestamp
                continue
            t = packet.pts * tb
            times.append(t)
            if packet.is_keyframe:
                keys.append(t)
    except av.FFmpegError as exc:  # damaged data part-way: the packets before it still count
        error = str(exc)
    times.sort()
    keys.sort()
    return times, keys, error


def read_packets(path: str) -> tuple[list[float], list[float]]:
    """(sorted presentation times of every video packet, keyframe times), by demuxing only: no decoding."""
    with _open(path) as container:
        if not container.streams.video:
            return [], []
        times, keys, _ = _demux_times(container, container.streams.video[0])
    return times, keys


def mp4_index_missing(path: str | Path) -> bool:
    """An ISO-BMFF file (an `ftyp` box first) whose top-level boxes end, or run past the end of the file,
    before a whole `moov` box: a recording cut short before its index was written."""
    size = Path(path).stat().st_size
    with open(path, "rb") as fh:
        if fh.read(8)[4:8] != b"ftyp":
            return False
        offset = 0
        while offset + 8 <= size:
            fh.seek(offset)
            box = fh.read(16)
            length, kind = int.from_bytes(box[:4], "big"), box[4:8]
            if length == 1 and len(box) == 16:  # a 64-bit size follows the type
                length = int.from_bytes(box[8:16], "big")
            elif length == 0:  # "to the end of the file"
                length = size - offset
            if kind == b"moov":
                return offset + length > size
            if length < 8:
                return True
            offset += length
        return True


def _frame_at(container, stream, at_s: float):
    """Decode one frame at `at_s` seconds (from the keyframe before it); None when none decodes."""
    import av

    try:
        container.seek(int(at_s / float(stream.time_base)) if at_s > 0 else 0, stream=stream, backward=True,
                       any_frame=False)
        return next(container.decode(stream), None)
    except (av.FFmpegError, StopIteration):
        return None


def probe_video(path: str | Path, video_id: str, source_format: str = "none", check_decode: bool = True) -> SourceVideo:
    """Probe one file; raise ProbeError with a quarantine reason when it is not a usable video.

    One demuxing pass gives every packet's time; the first frame is decoded (it carries the display
    rotation) and, with `check_decode`, so is the last keyframe: a file whose data is damaged fails at one of them.
    """
    import av

    path = str(path)
    p = Path(path)
    if not p.is_file():
        raise ProbeError(reasons.VIDEO_MISSING, f"{path} does not exist")
    size = p.stat().st_size
    if size == 0:
        raise ProbeError(reasons.VIDEO_EMPTY, f"{path} is a zero-byte file")
    try:
        container = _open(path)
    except av.FFmpegError as exc:
        reason = reasons.VIDEO_TRUNCATED if mp4_index_missing(p) else reasons.VIDEO_UNREADABLE
        raise ProbeError(reason, f"cannot read {p.name}: {exc.strerror or exc}") from None
    with container:
        video = next((s for s in container.streams.video
                      if not s.disposition & av.stream.Disposition.attached_pic), None)
        if video is None:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise ProbeError(reasons.VIDEO_NO_VIDEO_STREAM,
                             f"{p.name} has no video stream (streams: {', '.join(kinds)})")
        has_audio = bool(container.streams.audio)
        container_duration = container.duration / 1e6 if container.duration else 0.0
        tb = float(video.time_base)
        times, keyframes, demux_error = _demux_times(container, video)
        if not times:
            raise ProbeError(reasons.VIDEO_TRUNCATED, f"{p.name} has a video stream header but no video packets"
                                                      + (f" ({demux_error})" if demux_error else ""))
        r_fps, avg_fps = _rate(video.base_rate), _rate(video.average_rate)
        deltas = [b - a for a, b in zip(times, times[1:]) if b > a]
        median_delta = statistics.median(deltas) if deltas else None
        fps = avg_fps or r_fps or (1 / median_delta if median_delta else 0.0)
        is_vfr = bool(deltas) and (max(deltas) - min(deltas)) > 0.5 * median_delta
        declared_duration = (video.duration or 0) * tb or container_duration
        stream_start = (video.start_time or 0) * tb
        frame_dur = 1.0 / fps if fps else 0.0
        packet_end = times[-1] - stream_start + frame_dur
        header_frames = video.frames or 0
        # A file cut short keeps its header's claims (duration, frame count) but lacks the packets.
        if (header_frames and len(times) < 0.98 * header_frames - 1) or packet_end < 0.9 * declared_duration - 0.5:
            raise ProbeError(reasons.VIDEO_TRUNCATED,
                             f"{p.name}: header says {header_frames or '?'} frames / {declared_duration:.2f}s, "
                             f"only {len(times)} packets up to {packet_end:.2f}s are present")
        duration = min(declared_duration, packet_end) if declared_duration else packet_end
        video.codec_context.thread_count = 1  # one frame each: no decoder threads to start
        first = _frame_at(container, video, 0.0)
        if first is None or (check_decode and keyframes and keyframes[-1] > keyframes[0]
                             and _frame_at(container, video, keyframes[-1]) is None):
            raise ProbeError(reasons.VIDEO_UNDECODABLE, f"{p.name}: frames cannot be decoded")
        codec, pix_fmt = video.codec_context.name, video.codec_context.pix_fmt
        width, height = video.codec_context.width, video.codec_context.height
    return SourceVideo(
        video_id=video_id, path=path, source_format=source_format,
        size_bytes=size, duration_s=round(duration, 6), fps=round(fps, 6), r_fps=r_fps, is_vfr=is_vfr,
        n_frames=len(times), width=width, height=height, rotation=int(round(first.rotation or 0)) % 360,
        codec=codec or "", pix_fmt=pix_fmt or None, mtime_ns=p.stat().st_mtime_ns, has_audio=has_audio,
        keyframe_times=[round(k - stream_start, 6) for k in keyframes],
    )
