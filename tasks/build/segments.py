"""Pure segment-time arithmetic: validation, normal-segment sampling, clip splitting, span assignment.

Nothing here touches a file; the cutter and the flow call these with probed numbers.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence

from hivau.schemas import reasons

Span = tuple[float, float]
AssignRule = Literal["max_overlap", "midpoint", "any_overlap"]


@dataclass
class SegmentCheck:
    """Outcome of checking one segment against its video: kept (maybe clamped) or rejected."""

    start_s: float
    end_s: float
    reason: Optional[str] = None
    detail: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reason is None


def check_segment(start: float, end: float, duration: float, fps: float, tolerance_frames: float = 1.0) -> SegmentCheck:
    """Validate [start, end] against a video of `duration` seconds.

    An end past the video by at most `tolerance_frames` frames (annotation tools round to the next frame)
    is clamped and noted (plus 1.5 ms, as annotation files round times to the millisecond); anything
    further is rejected.
    """
    if any(isinstance(t, float) and math.isnan(t) for t in (start, end)) or start is None or end is None:
        return SegmentCheck(start, end, reasons.TIME_NAN, f"time is NaN or missing: [{start}, {end}]")
    if start < 0 or end < 0:
        return SegmentCheck(start, end, reasons.TIME_NEGATIVE, f"negative time: [{start}, {end}]")
    if start >= end:
        return SegmentCheck(start, end, reasons.TIME_START_NOT_BEFORE_END, f"start {start} is not before end {end}")
    tolerance = tolerance_frames / fps if fps > 0 else 0.0
    if start >= duration:
        return SegmentCheck(start, end, reasons.TIME_PAST_END, f"starts at {start:.3f}s, video ends at {duration:.3f}s")
    if end > duration + tolerance + 1.5e-3:
        return SegmentCheck(start, end, reasons.TIME_PAST_END, f"ends at {end:.3f}s, video ends at {duration:.3f}s")
    if end > duration:
        return SegmentCheck(start, duration, notes=[f"end {end:.3f}s clamped to video end {duration:.3f}s"])
    return SegmentCheck(start, end)


def overlapping(segments: Sequence[Span]) -> dict[int, int]:
    """Map the index of each segment that overlaps an earlier kept one to that earlier index.

    Segments are visited in their given order; the first of an overlapping pair is kept. Touching
    segments (one ends where the next starts) do not overlap.
    """
    kept: list[int] = []
    clashes: dict[int, int] = {}
    for i, (s, e) in enumerate(segments):
        other = next((k for k in kept if s < segments[k][1] and segments[k][0] < e), None)
        if other is None:
            kept.append(i)
        else:
            clashes[i] = other
    return clashes


def sample_normal_segments(video_id: str, duration: float, count: int, length_s: float, seed: int) -> list[Span]:
    """Deterministic, non-overlapping segments for a normal video with no annotated events.

    The video is split into `count` equal strata and one segment of `length_s` is placed at a seeded
    random offset inside each, so segments spread over the whole video. The seed is combined with the
    video id (string seeding is stable across processes), so each video gets its own draw.
    """
    if duration <= 0 or count <= 0 or length_s <= 0:
        return []
    if duration <= length_s:
        return [(0.0, round(duration, 3))]
    count = min(count, int(duration // length_s))
    rng = random.Random(f"{seed}:{video_id}")
    stratum = duration / count
    segments = []
    for k in range(count):
        lo = k * stratum
        offset = rng.uniform(0.0, max(stratum - length_s, 0.0))
        start = round(lo + offset, 3)
        segments.append((start, round(min(start + length_s, duration), 3)))
    return segments


def split_even(start: float, end: float, k: int) -> list[Span]:
    """Split [start, end] into `k` equal clips."""
    if k <= 0 or end <= start:
        return []
    step = (end - start) / k
    bounds = [round(start + i * step, 3) for i in range(k)] + [round(end, 3)]
    return list(zip(bounds[:-1], bounds[1:]))


def split_fixed(start: float, end: float, length_s: float, min_length_s: float = 0.0) -> list[Span]:
    """Fixed-length clips over [start, end]; a tail shorter than `min_length_s` joins the previous clip."""
    if length_s <= 0 or end <= start:
        return []
    clips: list[Span] = []
    t = start
    while t < end - 1e-9:
        clips.append((round(t, 3), round(min(t + length_s, end), 3)))
        t += length_s
    if len(clips) > 1 and clips[-1][1] - clips[-1][0] < min_length_s:
        tail = clips.pop()
        clips[-1] = (clips[-1][0], tail[1])
    return clips


def overlap_s(a: Span, b: Span) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def assign_spans(spans: Sequence[Span], events: Sequence[Span], rule: AssignRule = "max_overlap",
                 min_overlap: float = 0.5) -> list[Optional[int]]:
    """For each captioned span, the index of the event it belongs to, or None.

    - `max_overlap`: the event sharing the most time with the span, if that shared time is at least
      `min_overlap` of the span's length (ties go to the earlier event);
    - `midpoint`: the event containing the span's midpoint;
    - `any_overlap`: the event sharing the most time with the span, however little.
    """
    out: list[Optional[int]] = []
    for span in spans:
        length = span[1] - span[0]
        if rule == "midpoint":
            mid = (span[0] + span[1]) / 2
            out.append(next((i for i, ev in enumerate(events) if ev[0] <= mid <= ev[1]), None))
            continue
        shared = [overlap_s(span, ev) for ev in events]
        best = max(range(len(events)), key=lambda i: (shared[i], -i), default=None)
        if best is None or shared[best] <= 0:
            out.append(None)
        elif rule == "max_overlap" and length > 0 and shared[best] / length < min_overlap:
            out.append(None)
        else:
            out.append(best)
    return out


def merge_spans(spans: Sequence[Span], max_gap_s: float = 1.0) -> list[Span]:
    """Union of spans, joining those closer than `max_gap_s`; used to form normal events from captions."""
    merged: list[list[float]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1] + max_gap_s:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(round(s, 3), round(e, 3)) for s, e in merged]


def keyframe_at_or_before(t: float, keyframe_times: Sequence[float]) -> float:
    """The last keyframe time not after `t` (stream copy can only start there)."""
    if not keyframe_times:
        return 0.0
    i = bisect.bisect_right(keyframe_times, t + 1e-6)
    return keyframe_times[max(i - 1, 0)]


def uniform_frame_indices(first: int, last: int, n: int) -> list[int]:
    """`n` frame indices spread evenly over [first, last] (inclusive), each at the centre of its bin."""
    if n <= 0 or last < first:
        return []
    count = last - first + 1
    if n >= count:
        return list(range(first, last + 1))
    step = count / n
    return [first + int(step * i + step / 2) for i in range(n)]


def time_to_frame_range(start: float, end: float, fps: float, n_frames: int) -> tuple[int, int]:
    """Inclusive frame index range whose timestamps fall inside [start, end)."""
    first = max(0, math.ceil(start * fps - 1e-6))
    last = min(n_frames - 1, math.ceil(end * fps - 1e-6) - 1)
    return first, max(first, last)
