"""Frame samplers over per-frame anomaly scores: Holmes-VAU's density-aware ATS (hivau's variant `ats` and the
released one `ats_holmes`), Top-K and uniform."""

from __future__ import annotations

from typing import Literal, Sequence, get_args

import numpy as np

from hivau.tasks.build.segments import uniform_frame_indices

SamplerName = Literal["ats", "ats_holmes", "uniform", "topk"]
SAMPLER_NAMES: tuple[str, ...] = get_args(SamplerName)


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


def holmes_density_indices(scores: Sequence[float], n: int, tau: float = 0.1) -> list[int]:
    """Holmes-VAU's released ATS (`Temporal_Sampler.density_aware_sample`): n indices, duplicates kept.

    Few candidates or little anomaly (sum of scores under 1): rint(linspace(0, T-1, n)). Otherwise scores + tau
    as mass, C = [0, cumsum], n targets evenly on [1, round(C[-1])], each mapped through the piecewise-linear
    inverse of C (extrapolated past its end), floored and clamped to [0, T-1]. Indices come out sorted.
    """
    s = np.asarray(scores, dtype=np.float64)
    total = len(s)
    if total == 0 or n <= 0:
        return []
    # the released check is a plain Python sum of the raw scores (no clipping), strictly below 1
    if total <= n or sum(s.tolist()) < 1:
        return [int(i) for i in np.rint(np.linspace(0, total - 1, n))]
    mass = s + tau
    if not np.all(np.isfinite(mass)) or np.any(mass <= 0):
        # released code: scipy's interp1d would silently re-sort a non-increasing C; refuse instead
        raise ValueError("ats_holmes needs finite scores above -tau")
    cumulative = np.concatenate(([0.0], np.cumsum(mass)))
    targets = np.linspace(1, np.round(cumulative[-1]).astype(int), n)  # np.round: halves go to even
    positions = _interp1d_linear(targets, cumulative, np.arange(total + 1, dtype=np.float64))
    # int() truncates like a floor here: positions are >= 0 because every target is >= 1 > C[0] = 0
    return [min(total - 1, max(0, int(p))) for p in positions]


def _interp1d_linear(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """scipy's interp1d(xp, fp, kind='linear', fill_value='extrapolate')(x), with its exact arithmetic.

    Not np.interp: interp1d takes the segment left of a knot hit (searchsorted side='left') and computes
    slope * (x - x_lo) + y_lo, which can land one ulp below the knot's value (and then floor one frame lower);
    past either end it extends the first or last segment.
    """
    hi = np.clip(np.searchsorted(xp, x), 1, len(xp) - 1)
    lo = hi - 1
    slope = (fp[hi] - fp[lo]) / (xp[hi] - xp[lo])
    return slope * (x - xp[lo]) + fp[lo]


def topk_indices(scores: Sequence[float], n: int) -> list[int]:
    """The n highest-scoring frames, sorted by time (ties to the earlier frame)."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) <= n:
        return uniform_indices(len(scores), n)
    order = np.lexsort((np.arange(len(scores)), -scores))[:n]
    return sorted(int(i) for i in order)


def sample_indices(name: SamplerName, scores: Sequence[float], n: int, tau: float = 0.1) -> list[int]:
    """The named sampler's frame indices (`ats_holmes` may repeat an index; the others never do)."""
    if name == "ats":
        return density_aware_indices(scores, n, tau)
    if name == "ats_holmes":
        return holmes_density_indices(scores, n, tau)
    if name == "topk":
        return topk_indices(scores, n)
    if name == "uniform":
        return uniform_indices(len(scores), n)
    raise ValueError(f"unknown sampler {name!r}: use {', '.join(SAMPLER_NAMES)}")


def scores_to_frames(snippet_scores: Sequence[float], stride: int, n_frames: int) -> np.ndarray:
    """Per-snippet scores (one per `stride` frames) spread to every frame of the video."""
    snippet_scores = np.asarray(snippet_scores, dtype=np.float64)
    if len(snippet_scores) == 0:
        return np.zeros(n_frames)
    owner = np.minimum(np.arange(n_frames) // stride, len(snippet_scores) - 1)
    return snippet_scores[owner]
