"""Frame sampling with decord: N frames of a segment, or given indices, by seeking (cost grows with N)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from hivau.tasks.build.segments import time_to_frame_range, uniform_frame_indices


@dataclass
class SampledFrames:
    frames: np.ndarray  # (N, H, W, 3) uint8, RGB
    indices: list[int]
    times_s: list[float]


def open_reader(path: str, width: int = -1, height: int = -1):
    import decord  # imported here: the core package must import without it loaded

    return decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height, num_threads=1)


def shrink_to_short_side(frames: np.ndarray, short_side: int) -> np.ndarray:
    """(N, H, W, 3) frames scaled down to an even size whose shorter side is `short_side`; smaller ones as they are."""
    h, w = frames.shape[1:3]
    scale = short_side / min(h, w)
    if scale >= 1:
        return frames
    import cv2

    size = (max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def sample_frames(path: str, n: Optional[int] = None, indices: Optional[Sequence[int]] = None,
                  start_s: Optional[float] = None, end_s: Optional[float] = None,
                  width: int = -1, height: int = -1, short_side: Optional[int] = None) -> SampledFrames:
    """`n` frames spread uniformly over [start_s, end_s] (default: the whole video), or exactly `indices`.

    `short_side` scales frames down (never up) so that their shorter side is that many pixels.

    Only the requested frames are decoded (decord seeks to the nearest keyframe before each), so a
    10-frame sample of an hour-long video costs about as much as one of a minute-long video.
    """
    if (n is None) == (indices is None):
        raise ValueError("give exactly one of n or indices")
    reader = open_reader(path, width, height)
    total = len(reader)
    if indices is None:
        fps = reader.get_avg_fps()
        start = 0.0 if start_s is None else start_s
        end = total / fps if end_s is None else end_s
        first, last = time_to_frame_range(start, end, fps, total)
        indices = uniform_frame_indices(first, last, n)
    indices = [int(i) for i in indices]
    bad = [i for i in indices if not 0 <= i < total]
    if bad:
        raise IndexError(f"frame indices {bad[:5]} outside 0..{total - 1} of {path}")
    if not indices:
        return SampledFrames(np.zeros((0, 0, 0, 3), np.uint8), [], [])
    frames = reader.get_batch(indices).asnumpy()
    if short_side is not None:
        frames = shrink_to_short_side(frames, short_side)
    times = [float(reader.get_frame_timestamp(i)[0]) for i in indices]
    return SampledFrames(frames, indices, times)
