"""Inference helpers every reader of a trained model shares: snippet features and per-frame anomaly scores, the
frames each item is given (uniform for clips, a sampler over the scores for events and videos), and device moves."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from hivau.models.config import TrainConfig
from hivau.models.data import FrameStore, sampled_indices
from hivau.models.sampler import scores_to_frames, uniform_indices
from hivau.schemas.records import InstructionRow
from hivau.workspace import atomic_target


class SnippetFeatures:
    """Frozen encoders' snippet features per media file: computed once, a chunk of frames at a time, and kept
    on disk, so that the scorer's epochs never hold a release's frames or features in memory."""

    def __init__(self, model, store: FrameStore, folder: Optional[Path], device):
        self.model, self.store, self.folder, self.device = model, store, folder, device

    def _path(self, media: Path) -> Optional[Path]:
        if self.folder is None:
            return None
        stat = media.stat()
        key = json.dumps([str(media), stat.st_size, stat.st_mtime_ns, self.model.cfg.scorer.stride])
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"

    def get(self, media: Path) -> torch.Tensor:
        path = self._path(media)
        if path is not None and path.is_file():
            return torch.from_numpy(np.load(path)).to(self.device)
        _, frames, motion = self.store.snippets(media, self.model.cfg.scorer.stride)
        with torch.no_grad():
            feats = self.model.snippet_features(frames, motion).float()
        if path is not None:
            with atomic_target(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, feats.cpu().numpy())
        return feats.to(self.device)


def snippet_features_of(model, store: FrameStore, media: Path, frozen: Optional[SnippetFeatures],
                        flip: bool = False) -> torch.Tensor:
    """A media file's scorer inputs: from the frozen cache, or through the encoders (with gradients)."""
    if frozen is not None:
        return frozen.get(media)
    _, frames, motion = store.snippets(media, model.cfg.scorer.stride)
    if flip:  # mirror: anomalies have no side
        frames, motion = np.ascontiguousarray(frames[:, :, ::-1]), np.ascontiguousarray(motion[:, :, ::-1])
    return model.snippet_features(frames, motion)


def snippet_scores(model, store: FrameStore, media: Path, device, frozen: Optional[SnippetFeatures] = None):
    """Sigmoid scores of one media file's snippets."""
    with torch.no_grad():
        feats = snippet_features_of(model, store, media, frozen).to(device)
        return torch.sigmoid(model.scorer(feats[None]))[0].float().cpu().numpy()


def frame_scores(model, store: FrameStore, media: Path, device, memo: Optional[dict] = None,
                 frozen: Optional[SnippetFeatures] = None) -> np.ndarray:
    """Per-frame scores of a media file; `memo` keeps them for callers that ask again with the same scorer."""
    if memo is not None and str(media) in memo:
        return memo[str(media)]
    n, _ = store.length(media)
    scores = scores_to_frames(snippet_scores(model, store, media, device, frozen), model.cfg.scorer.stride, n)
    if memo is not None:
        memo[str(media)] = scores
    return scores


def frozen_features(model, store: FrameStore, out: Path, device) -> Optional[SnippetFeatures]:
    """The on-disk snippet features when the scorer's encoders are frozen (None: they train with it)."""
    if model.cfg.scorer.train_encoders:
        return None
    return SnippetFeatures(model, store, out / "cache" / "snippets", device)


def frame_plan(model, store: FrameStore, release: Path, rows: list[InstructionRow], cfg: TrainConfig, device,
               sampler: Optional[str] = None,
               memo: Optional[dict] = None, frozen: Optional[SnippetFeatures] = None) -> dict[str, tuple[Path, list[int]]]:
    """Which frames each item is trained on: uniform for clips, the sampler over scorer scores for events and
    videos. Only indices are kept (a few ints per item); the frames are decoded per step."""
    plan = {}
    n = model.cfg.n_frames
    for row in rows:
        if row.item_id in plan:
            continue
        media = release / row.media_path
        count, _ = store.length(media)
        if row.level == "clip":
            plan[row.item_id] = (media, uniform_indices(count, n))
            continue
        scores = frame_scores(model, store, media, device, memo, frozen)
        plan[row.item_id] = (media, sampled_indices(count, n, sampler or cfg.sampler, scores, cfg.tau,
                                                        cfg.candidate_stride))
    return plan


def frame_store(cfg: TrainConfig, model, out: Path) -> FrameStore:
    cache = None if cfg.frame_cache == "none" else Path(cfg.frame_cache) if cfg.frame_cache else out / "cache" / "frames"
    return FrameStore(cache, model.cfg.frame_size, model.cfg.motion_mask, model.cfg.motion_threshold)


def quiet_worker(_: int) -> None:
    torch.set_num_threads(1)  # decoding workers must not compete with the training threads
    # a terminal's Ctrl-C reaches the whole process group: the main process decides when to stop (after a step,
    # with a checkpoint); a worker that died of it would fail the step instead
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def to_device(inputs: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
