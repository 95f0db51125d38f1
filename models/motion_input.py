"""HAWK's motion input (Eq. 3-4): Farneback flow to the previous frame, its normalised magnitude masking the frame."""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

MaskMode = Literal["soft", "hard"]


def flow_magnitude(previous: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Farneback optical flow magnitude between two RGB frames, scaled to [0, 1] by its maximum."""
    import cv2

    prev_gray = cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY)
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    flow = cv2.calcOpticalFlowFarneback(prev_gray, gray, None, pyr_scale=0.5, levels=3, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
    magnitude = np.linalg.norm(flow, axis=-1)
    peak = float(magnitude.max())
    return magnitude / peak if peak > 1e-6 else np.zeros_like(magnitude)


def motion_mask(frame: np.ndarray, magnitude: np.ndarray, mode: MaskMode = "soft",
                threshold: float = 0.2) -> np.ndarray:
    """The frame weighted by motion: soft multiplies by the magnitude (the paper), hard keeps pixels above
    `threshold` (HAWK's released code)."""
    weight = magnitude if mode == "soft" else (magnitude > threshold).astype(np.float32)
    return (frame.astype(np.float32) * weight[..., None]).round().astype(np.uint8)


def previous_indices(indices: Sequence[int]) -> list[int]:
    """The frame each sampled frame is compared with: the one just before it (frame 0 uses frame 1)."""
    return [i - 1 if i > 0 else i + 1 for i in indices]


def motion_frames(reader, indices: Sequence[int], mode: MaskMode = "soft", threshold: float = 0.2,
                  frames: np.ndarray | None = None) -> np.ndarray:
    """Motion-masked frames for `indices` of an open decord reader; decodes only those frames and their
    predecessors (pass `frames` when the sampled frames are already decoded)."""
    indices = [int(i) for i in indices]
    if not indices:
        return np.zeros((0, 0, 0, 3), np.uint8)
    before = [min(p, len(reader) - 1) for p in previous_indices(indices)]
    wanted = sorted(set(before) | (set() if frames is not None else set(indices)))
    decoded = dict(zip(wanted, reader.get_batch(wanted).asnumpy()))
    current = frames if frames is not None else np.stack([decoded[i] for i in indices])
    return np.stack([motion_mask(cur, flow_magnitude(decoded[p], cur), mode, threshold)
                     for cur, p in zip(current, before)])
