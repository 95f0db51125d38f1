"""`hivau export-frames`: each item's selected frames as JPEG files, with LLaMA-Factory and ms-swift rows whose
videos are those frame lists, so that frameworks without an anomaly-aware sampler train on ATS frames.

Written outside the release (which is immutable): `frames/{dataset}/{clips,events,videos}/{split}/{item}/
{frame:06d}.jpg`, `llamafactory/{train,test}.jsonl` + `dataset_info.json`, `swift/{train,test}.jsonl`,
`rejects.jsonl` (media that failed to decode, with the reason) and `export.json`; every path in the rows is
relative to the output folder. Both frameworks take a video as a list of frame files (LLaMA-Factory's
`converter.py` joins each frame to `media_dir`; ms-swift documents frame lists for the Qwen-VL families).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Optional

import numpy as np

from hivau.models.data import FrameStore, sampled_indices
from hivau.models.io import load_model
from hivau.models.sampler import SamplerName
from hivau.schemas.records import InstructionRow, read_release_rows
from hivau.tasks.build.frames import open_reader, sample_frames
from hivau.tasks.release.exports import MEDIA_DIR, llamafactory_dataset_info, messages_record
from hivau.workspace import atomic_write_bytes

FRAMES_DIR = "frames"
SPLITS = ("train", "test")
ScoreProvider = Callable[[Path], np.ndarray]  # a media file -> one anomaly score per frame


@dataclass(frozen=True)
class Item:
    item_id: str
    level: str
    split: str
    media_path: str  # relative to the release


@dataclass(frozen=True)
class Reject:
    item_id: str
    level: str
    split: str
    media_path: str
    reason: str


# ---------------------------------------------------------------- pure helpers
def select_frames(level: str, scores: np.ndarray, n: int, sampler: SamplerName, tau: float = 0.1,
                  candidate_stride: int = 1) -> list[int]:
    """Frame indices of one item from its per-frame scores (one per frame of the file): clips uniform, as the
    trainer reads them; events and videos by `sampler` (ATS puts more frames where the scores are high;
    `ats_holmes`, Holmes-VAU's released ATS, may repeat a frame)."""
    return sampled_indices(len(scores), n, "uniform" if level == "clip" else sampler, np.asarray(scores, float),
                           tau, candidate_stride)


def items_of(rows: Iterable[InstructionRow]) -> list[Item]:
    """The distinct media items of the rows, in row order."""
    seen: dict[str, Item] = {}
    for r in rows:
        seen.setdefault(r.item_id, Item(r.item_id, r.level, r.split, r.media_path))
    return list(seen.values())


def frame_paths(item: Item, indices: Iterable[int]) -> list[str]:
    """`frames/` + the item's media path inside `media/` without its suffix, one JPEG per frame index (the same
    index is the same image whichever sampler chose it, so re-runs and other samplers reuse it)."""
    parts = PurePosixPath(item.media_path).parts
    folder = PurePosixPath(FRAMES_DIR, *(parts[1:] if parts[0] == MEDIA_DIR else parts)).with_suffix("")
    return [f"{folder}/{i:06d}.jpg" for i in indices]


def sampler_by_level(sampler: SamplerName, has_scores: bool) -> dict[str, str]:
    """What each level is actually sampled with: ATS and Top-K need scores, so without a model it is uniform."""
    chosen = sampler if has_scores else "uniform"
    return {"clip": "uniform", "event": chosen, "video": chosen}


# ---------------------------------------------------------------- effects
def model_scores(model_dir: str | Path, device: str = "auto") -> ScoreProvider:
    """Per-frame scores from a trained hivau model's anomaly scorer (torch and the model load here only)."""
    import torch

    from hivau.models.inference import frame_scores

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(model_dir, device)
    store = FrameStore(None, model.cfg.frame_size, model.cfg.motion_mask, model.cfg.motion_threshold)
    return lambda media: frame_scores(model, store, media, device)


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def decode_missing(media: Path, out: Path, paths: list[str], indices: list[int],
                   short_side: Optional[int]) -> list[tuple[str, np.ndarray]]:
    """The frames whose files are not there yet (each is only ever renamed in whole), decoded by seeking, each
    once (`ats_holmes` may pick a frame twice: the row lists it twice, one file holds it)."""
    todo = list({p: (i, p) for i, p in zip(indices, paths) if not (out / p).is_file()}.values())
    if not todo:
        return []
    sampled = sample_frames(str(media), indices=[i for i, _ in todo], short_side=short_side)
    return [(p, frame) for (_, p), frame in zip(todo, sampled.frames)]


def _jsonl(records: Iterable) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def export_frames(release: str | Path, out: str | Path, n: int = 16, sampler: SamplerName = "ats",
                  scores: Optional[ScoreProvider] = None, tau: float = 0.1, short_side: Optional[int] = None,
                  quality: int = 90, model: Optional[str] = None, advance: Callable[[], None] = lambda: None) -> dict:
    """Write the frame-list export of `release` into `out` and return its summary (also `out/export.json`).

    A media file that fails to decode becomes a row of `rejects.jsonl` (its rows are left out) and the run goes on.
    """
    release, out = Path(release).resolve(), Path(out).resolve()
    if not (release / "manifest.json").is_file():
        raise FileNotFoundError(f"{release} is not a release: no manifest.json")
    if out == release or out.is_relative_to(release):
        raise ValueError(f"{out} is inside the release; releases are never written, choose a folder outside it")
    manifest = json.loads((release / "manifest.json").read_text())
    levels = sampler_by_level(sampler, scores is not None)
    rows = {split: read_release_rows(release, split, missing_ok=True) for split in SPLITS}
    frames_of: dict[str, list[str]] = {}
    rejects: list[Reject] = []
    written = 0
    for item in items_of(r for split in SPLITS for r in rows[split]):
        media = release / item.media_path
        try:
            count = len(open_reader(str(media)))
            frame_scores = scores(media) if scores is not None and item.level != "clip" else np.zeros(count)
            if len(frame_scores) != count:
                raise ValueError(f"{len(frame_scores)} scores for {count} frames")
            indices = select_frames(item.level, frame_scores, n, levels[item.level], tau)
            if not indices:
                raise ValueError("no frames")
            paths = frame_paths(item, indices)
            fresh = decode_missing(media, out, paths, indices, short_side)
        except Exception as exc:  # decord, cv2 and the scorer raise many kinds; each is a recorded reject
            rejects.append(Reject(item.item_id, item.level, item.split, item.media_path,
                                  f"{type(exc).__name__}: {exc}".strip()))
        else:
            for path, frame in fresh:  # outside the try: a failed write (a full disk) stops the run
                # no fsync: a frame is cheap to redo, and thousands of fsyncs would dominate the run
                atomic_write_bytes(out / path, encode_jpeg(frame, quality), durable=False)
            written += len(fresh)
            frames_of[item.item_id] = paths
        advance()
    counts = {}
    for split in SPLITS:
        records = [messages_record(r, frames_of[r.item_id]) for r in rows[split] if r.item_id in frames_of]
        counts[split] = len(records)
        for folder in ("llamafactory", "swift"):
            atomic_write_bytes(out / folder / f"{split}.jsonl", _jsonl(records))
    atomic_write_bytes(out / "llamafactory" / "dataset_info.json", json.dumps(
        llamafactory_dataset_info({s: f"{s}.jsonl" for s in SPLITS}), indent=2).encode())
    atomic_write_bytes(out / "rejects.jsonl", _jsonl(asdict(r) for r in rejects))
    summary = {"release": str(release), "release_name": manifest.get("name"),
               "release_content_sha256": manifest.get("content_sha256"), "model": model, "frames": n,
               "sampler": levels, "tau": tau, "rows": counts, "items": len(frames_of), "rejects": len(rejects),
               "frames_written": written}
    atomic_write_bytes(out / "export.json", json.dumps(summary, indent=2).encode())
    return summary
