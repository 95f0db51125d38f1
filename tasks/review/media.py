"""The media reviewers watch: clips as cut, events re-cut with context, whole videos as browser-playable proxies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hivau.schemas.item import Tables
from hivau.tasks.build.cut import CutSettings, cut_or_resume, cut_path
from hivau.workspace import Workspace


@dataclass(frozen=True)
class ReviewMedia:
    path: Path
    fps: float
    offset_s: float  # source-video time of the file's first frame


def prepare_review_media(ws: Workspace, tables: Tables, context_s: float) -> dict[str, ReviewMedia]:
    """Clips as cut; events re-cut with `context_s` on each side; whole videos as browser-playable proxies."""
    videos = {v.video_id: v for v in tables.videos}
    out: dict[str, ReviewMedia] = {}
    for clip in tables.clips:
        if clip.media_path and clip.video_id in videos:
            out[clip.clip_id] = ReviewMedia(ws.root / clip.media_path, videos[clip.video_id].fps,
                                            clip.cut_start_s if clip.cut_start_s is not None else clip.start_s)
    for event in tables.events:
        v = videos.get(event.video_id)
        if v is None or not event.media_path:
            continue
        start, end = max(0.0, event.start_s - context_s), min(v.duration_s, event.end_s + context_s)
        result, _ = cut_or_resume(ws, f"review_{event.event_id}", ws.review_media(event.event_id), v, start, end,
                                  "accurate", CutSettings())
        out[event.event_id] = ReviewMedia(Path(result.path), v.fps, result.start_s)
    for v in tables.videos:
        # H.264 plays in every browser and only needs remuxing; anything else is re-encoded once.
        mode = "copy" if v.codec == "h264" else "accurate"
        result, _ = cut_or_resume(ws, playable_id(v.video_id), ws.video_media(v.video_id), v, 0.0, v.duration_s, mode,
                                  CutSettings())
        out[v.video_id] = ReviewMedia(Path(result.path), v.fps, result.start_s)
    return out




def playable_id(video_id: str) -> str:
    """The segment id of a video's browser-playable copy (its cut record is kept under it)."""
    return f"video_{video_id}"


def playable_video(ws: Workspace, video_id: str) -> Path | None:
    """The video's browser-playable copy, when one was made."""
    return cut_path(ws, playable_id(video_id), ws.video_media(video_id))
