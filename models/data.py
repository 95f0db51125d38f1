"""A release as training data: its instruction rows, per-video event labels, motion targets and frames."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from hivau.models.motion_input import motion_frames
from hivau.models.sampler import sample_indices, uniform_indices
from hivau.schemas.records import InstructionRow, read_release_rows
from hivau.tasks.build.frames import open_reader
from hivau.workspace import atomic_target


@dataclass
class VideoLabels:
    """What the release says about one source video's anomalies."""

    video_id: str
    media: Path
    is_anomaly: bool
    events: list[tuple[float, float]] = field(default_factory=list)  # anomalous events, source-video seconds

    @property
    def weakly_labelled(self) -> bool:
        """Anomalous, but no event says when: only the ranking loss can use it."""
        return self.is_anomaly and not self.events


def video_labels(release: Path, split: str) -> list[VideoLabels]:
    """One entry per source video that has a video-level row (its media is the whole video)."""
    rows = read_release_rows(release, split, levels=("video", "event"))
    videos = {r.item_id: r for r in rows if r.level == "video"}
    spans: dict[str, set[tuple[float, float]]] = {}
    for e in rows:
        if e.level == "event" and e.is_anomaly:
            spans.setdefault(e.source_video, set()).add((float(e.start_s), float(e.end_s)))
    return [VideoLabels(v.item_id, release / v.media_path, v.is_anomaly, sorted(spans.get(v.item_id, ())))
            for _, v in sorted(videos.items())]


def motion_targets(rows: Sequence[InstructionRow]) -> dict[str, str]:
    """Per item, the motion phrases the release gives its caption or description (extracted once, from the
    reviewed text, when the manifests were written)."""
    out: dict[str, str] = {}
    for row in rows:
        if row.task in ("caption", "description") and row.item_id not in out:
            out[row.item_id] = "; ".join(row.motion_phrases)
    return out


class FrameStore:
    """Frames and motion-masked frames of media files at the model's input size, cached on disk (when `cache`
    is a folder)."""

    def __init__(self, cache: Optional[Path], image_size: int, mask: str = "soft", threshold: float = 0.2):
        self.cache, self.size, self.mask, self.threshold = cache, image_size, mask, threshold
        self._lengths: dict[str, tuple[int, float]] = {}

    def _reader(self, media: Path):
        return open_reader(str(media), width=self.size, height=self.size)

    def length(self, media: Path) -> tuple[int, float]:
        """(frame count, fps) of a media file."""
        key = str(media)
        if key not in self._lengths:
            reader = self._reader(media)
            self._lengths[key] = (len(reader), float(reader.get_avg_fps()))
        return self._lengths[key]

    def frames(self, media: Path, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(frames, motion frames), each (len(indices), size, size, 3) uint8."""
        path = self._cache_path(media, indices)
        if path is not None and path.is_file():
            with np.load(path) as data:
                return data["frames"], data["motion"]
        reader = self._reader(media)
        frames = reader.get_batch(list(map(int, indices))).asnumpy()
        motion = motion_frames(reader, indices, self.mask, self.threshold, frames=frames)
        if path is not None:  # DDP ranks may fill one cache at once: atomic_target's names are per writer
            with atomic_target(path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, frames=frames, motion=motion)
        return frames, motion

    def _cache_path(self, media: Path, indices: Sequence[int]) -> Optional[Path]:
        if self.cache is None:
            return None
        stat = media.stat()
        key = json.dumps([str(media), stat.st_size, stat.st_mtime_ns, list(map(int, indices)), self.size,
                          self.mask, self.threshold])
        return self.cache / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"

    def uniform(self, media: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n uniform frames (a clip's input) with their motion frames, padded to n."""
        count, _ = self.length(media)
        frames, motion = self.frames(media, uniform_indices(count, n))
        return pad_frames(frames, n), pad_frames(motion, n)

    def snippets(self, media: Path, stride: int) -> tuple[list[int], np.ndarray, np.ndarray]:
        """One frame every `stride` frames (the scorer's snippets) with their motion frames."""
        n, _ = self.length(media)
        indices = list(range(0, n, stride)) or [0]
        return (indices, *self.frames(media, indices))


def sampled_indices(n_frames: int, n: int, sampler: str, frame_scores: np.ndarray, tau: float,
                    candidate_stride: int) -> list[int]:
    """An event's or video's frames: the sampler over every k-th frame's score."""
    candidates = np.arange(0, n_frames, candidate_stride)
    picked = sample_indices(sampler, frame_scores[candidates], n, tau)
    return [int(candidates[i]) for i in picked]


def pad_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """Repeat the last frame so that every item has exactly n frames (short clips have fewer)."""
    if len(frames) >= n:
        return frames[:n]
    return np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), axis=0)])


class ItemFrames:
    """Rows as model samples, each decoded when asked for (in a DataLoader worker): (prompt, answer, frames,
    motion frames, motion text), with an item's frames taken at the indices its plan gives."""

    def __init__(self, rows: Sequence[InstructionRow], plan: dict[str, tuple[Path, list[int]]], store: FrameStore, n: int,
                 motion_texts: dict[str, str]):
        self.rows, self.plan, self.store, self.n, self.motion_texts = rows, plan, store, n, motion_texts

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple:
        row = self.rows[i]
        media, indices = self.plan[row.item_id]
        frames, motion = self.store.frames(media, indices)
        return (row.prompt, row.answer, pad_frames(frames, self.n), pad_frames(motion, self.n),
                self.motion_texts.get(row.item_id, ""))


class StepInputs:
    """Optimiser step -> its micro-batches, decoded and collated; a DataLoader over steps runs this in workers,
    so a step's frames exist only while it is prepared and trained on."""

    def __init__(self, items: ItemFrames, collate: Callable, batches: Callable[[int], list[list[int]]]):
        self.items, self.collate, self.batches = items, collate, batches

    def __getitem__(self, step: int) -> list[dict]:
        return [self.collate([self.items[i] for i in batch]) for batch in self.batches(step) if batch]
