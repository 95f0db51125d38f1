"""Event proposals for unannotated videos: runs of high anomaly score, for people to correct in Label Studio."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Proposal:
    start_s: float
    end_s: float
    score: float  # mean frame score inside the span


def propose_events(frame_scores: Sequence[float], fps: float, threshold: float = 0.5, min_length_s: float = 1.0,
                   merge_gap_s: float = 1.0) -> list[Proposal]:
    """Spans where the score is at least `threshold`; gaps shorter than `merge_gap_s` are bridged and spans
    shorter than `min_length_s` dropped."""
    scores = np.asarray(frame_scores, dtype=np.float64)
    above = np.r_[False, scores >= threshold, False]
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    runs = [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]  # [first, last + 1) frames
    merged: list[list[int]] = []
    for run in runs:
        if merged and run[0] - merged[-1][1] < merge_gap_s * fps:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    return [Proposal(round(a / fps, 3), round(b / fps, 3), round(float(scores[a:b].mean()), 4))
            for a, b in merged if (b - a) / fps >= min_length_s]


def score_video(model, store, path: Path) -> tuple[np.ndarray, float]:
    """Per-frame anomaly scores of a whole video and its fps."""
    from hivau.models.inference import frame_scores

    _, fps = store.length(path)
    return frame_scores(model, store, path, next(model.parameters()).device), fps
