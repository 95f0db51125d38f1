"""Frame samplers over per-frame anomaly scores: Holmes-VAU's density-aware ATS, Top-K and uniform."""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from hivau.tasks.build.segments import uniform_frame_indices

SamplerName = Literal["ats", "uniform", "topk"]


def uniform_indices(n_frames: int, n: int) -> list[int]:
    """n indices at the centres of n equal spans (every frame, once, when the video is that short)."""
    return uniform_frame_indices(0, n_frames - 1, n)


def density_aware_indices(scores: Sequence[float], n: int, tau: float = 0.1) -> list[int]:
    """ATS: scores + tau as mass, n points evenly on the cumulative axis, each mapped to its nearest frame.

    More frames land where scores are high; tau keeps some everywhere. With flat scores it is uniform.
    Indices are sorted; a point that maps to a frame already taken moves to the nearest free one, so the
    result has exactly min(n, len(scores)) distinct indices.
    """
    mass = np.clip(np.asarray(scores, dtype=np.float64), 0.0, None) + tau
    total = len(mass)
    if total <= n:
        return uniform_indices(total, n)
    cdf = np.cumsum(mass)
    # frame i owns the cumulative interval (cdf[i-1], cdf[i]]; its centre is where a point "is" frame i
    centres = cdf - mass / 2
    targets = (np.arange(n) + 0.5) * cdf[-1] / n
    nearest = np.abs(centres[None, :] - targets[:, None]).argmin(axis=1)
    return _distinct_sorted(nearest.tolist(), total)


def _distinct_sorted(indices: list[int], total: int) -> list[int]:
    """Sorted indices with collisions pushed to the next free frame, then the tail pulled back inside."""
    out: list[int] = []
    for i in sorted(indices):
        out.append(max(i, out[-1] + 1) if out else i)
    for k in range(len(out) - 1, -1, -1):
        limit = total - (len(out) - k)  # the latest frame index k can take and leave room for the rest
        if out[k] <= limit:
            break
        out[k] = limit
    return out


def topk_indices(scores: Sequence[float], n: int) -> list[int]:
    """The n highest-scoring frames, sorted by time (ties to the earlier frame)."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) <= n:
        return uniform_indices(len(scores), n)
    order = np.lexsort((np.arange(len(scores)), -scores))[:n]
    return sorted(int(i) for i in order)


def sample_indices(name: SamplerName, scores: Sequence[float], n: int, tau: float = 0.1) -> list[int]:
    if name == "ats":
        return density_aware_indices(scores, n, tau)
    if name == "topk":
        return topk_indices(scores, n)
    if name == "uniform":
        return uniform_indices(len(scores), n)
    raise ValueError(f"unknown sampler {name!r}: use ats, uniform or topk")


def scores_to_frames(snippet_scores: Sequence[float], stride: int, n_frames: int) -> np.ndarray:
    """Per-snippet scores (one per `stride` frames) spread to every frame of the video."""
    snippet_scores = np.asarray(snippet_scores, dtype=np.float64)
    if len(snippet_scores) == 0:
        return np.zeros(n_frames)
    owner = np.minimum(np.arange(n_frames) // stride, len(snippet_scores) - 1)
    return snippet_scores[owner]
