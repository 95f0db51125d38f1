"""Per-video stages over the workspace's store (ingest, probe, plan, cut, caption, motion) and their shards."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from pydantic import BaseModel, Field

from hivau.schemas import reasons
from hivau.schemas.item import AnnotatedEvent, BatchRecord, Tables, VideoItem
from hivau.schemas.records import AnnotationFormat, CutMode, DeclaredSplit, Level, ReviewRecord
from hivau.tasks.build.cut import CutError, CutSettings, cut_or_resume
from hivau.tasks.build.ingest import load_annotations
from hivau.tasks.build.plan import PlanSettings, plan_video
from hivau.tasks.build.probe import ProbeError, probe_video
from hivau.tasks.review.media import prepare_review_media
from hivau.tasks.review.merge import load_rule, merge_segments, review_of, winners
from hivau.tasks.text.caption import CaptionSettings, caption_items, make_captioner
from hivau.tasks.text.motion import motion_records
from hivau.tasks.text.verify import verify_item
from hivau.workspace import DiskFullError, Workspace, is_disk_full

REVIEWED_ANOMALY_LABEL = "Anomaly"


class ShardReport(BaseModel):
    """What one shard did, and where it ran (the Dask test checks the worker processes)."""

    videos: int = 0
    quarantined: int = 0
    segments_cut: int = 0
    segments_resumed: int = 0
    host: str = Field(default_factory=socket.gethostname)
    pid: int = Field(default_factory=os.getpid)
    started: float = Field(default_factory=time.monotonic, exclude=True)
    seconds: float = 0.0  # the shard's wall time: the benchmark reads whether shards slow down as a run goes on

    def save(self, ws: Workspace, item: VideoItem) -> None:
        """Write a finished video's record back to the store and count it."""
        ws.put_video(item)
        self.videos += 1
        self.quarantined += item.status == "quarantined"

    def finish(self) -> "ShardReport":
        self.seconds = round(time.monotonic() - self.started, 3)
        return self


# ---------------------------------------------------------------- ingest
def default_batch_id(fmt: AnnotationFormat, annotations: Optional[str], videos_dir: Optional[str]) -> str:
    """`{file stem}-{hash}`: readable, and two files of the same name in different folders stay apart."""
    source = Path(annotations if annotations and fmt != "none" else (videos_dir or "videos")).expanduser().resolve()
    return f"{source.stem}-{hashlib.sha256(str(source).encode()).hexdigest()[:6]}"


def _same_file(item: VideoItem, previous: Optional[VideoItem]) -> bool:
    probe = previous.probe if previous else None
    if probe is None or item.path is None or probe.path != item.path or not Path(item.path).is_file():
        return False
    stat = Path(item.path).stat()
    return (probe.size_bytes, probe.mtime_ns) == (stat.st_size, stat.st_mtime_ns)


def split_conflict(item: VideoItem, old: Optional[VideoItem], batch_id: str, split: DeclaredSplit) -> Optional[str]:
    """Why the video cannot join this batch's split: another batch declared it for the other one (a test video
    trained on is what declared splits exist to prevent). None when it can."""
    if old is None or old.batch == batch_id or old.split is None or split in ("auto", old.split):
        return None
    return (f"{item.video_id} is declared '{old.split}' by batch {old.batch}; batch {batch_id} declares it "
            f"'{split}'. It stays in '{old.split}' with batch {old.batch}'s record; take it out of one of the two "
            f"files (or build this batch with --split {old.split})")


def ingest_batch(ws: Workspace, batch_id: str, fmt: AnnotationFormat, annotations: Optional[str],
                 videos_dir: Optional[str], labels: Optional[str], split: DeclaredSplit = "auto") -> BatchRecord:
    """Read the annotations and store one fresh record per video of the batch.

    The batch's records replace exactly its own earlier ones: videos of other batches are untouched, and a
    video this batch no longer lists loses its record. A file that did not change keeps its probe. A declared
    split is kept with each record: an `auto` batch does not undo another batch's declaration, and a video
    declared for the other split by another batch is a `split_conflict` (its first record stays).
    """
    report = load_annotations(fmt, annotations, videos_dir, labels)
    previous = ws.get_batch(batch_id)
    now = f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%S.%fZ}"
    items = []
    for item in report.items:
        old = ws.get_video(item.video_id)
        if conflict := split_conflict(item, old, batch_id, split):
            report.reject(item.video_id, reasons.SPLIT_CONFLICT, conflict, item.source or "")
            continue
        item.batch = batch_id
        item.split = old.split if split == "auto" and old is not None and old.batch != batch_id else (
            None if split == "auto" else split)
        if _same_file(item, old):
            item.probe = old.probe
        ws.put_video(item)
        items.append(item)
    report.items = items
    kept = {it.video_id for it in report.items}
    for video_id in (previous.video_ids if previous else []):
        old = ws.get_video(video_id) if video_id not in kept else None
        if old is not None and old.batch == batch_id:
            ws.delete_video(video_id)
    batch = BatchRecord(batch_id=batch_id, format=fmt, annotations=str(annotations) if annotations else None,
                        videos_dir=str(Path(videos_dir).resolve()) if videos_dir else None,
                        labels=str(labels) if labels else None, split=split,
                        created_at=previous.created_at if previous else now,
                        n_entries=report.n_entries, video_ids=[it.video_id for it in report.items],
                        quarantine=report.quarantine)
    ws.put_batch(batch)
    return batch


# ---------------------------------------------------------------- probe, plan, cut
def probe_item(item: VideoItem) -> VideoItem:
    """Probe the item's video (unless ingest kept the probe of the unchanged file); a broken file becomes a
    quarantined item, never an exception."""
    item = item.model_copy(deep=True)
    if item.probe is not None:
        item.status = "probed"
        return item
    try:
        item.probe = probe_video(item.path, item.video_id, item.source_format)
        item.status = "probed"
    except ProbeError as exc:
        item.quarantine.append(item.failure(item.video_id, "video", "probe", exc.reason, exc.detail))
        item.status = "quarantined"
    return item


def apply_reviewed_proposals(item: VideoItem, reviews: dict[str, ReviewRecord]) -> VideoItem:
    """An unannotated video whose reviewer kept or drew anomalous spans (from the scorer's proposals) is
    planned on those spans, as if the annotation file had given them."""
    if item.events or item.spans:
        return item
    review = review_of(reviews, "video", item.video_id, item.video_id)
    if review is None or not review.events or review.verdict == "reject":
        return item
    item = item.model_copy(deep=True)
    item.events = [AnnotatedEvent(start_s=a, end_s=b) for a, b in review.events]
    if not item.is_anomaly:  # the reviewer said "anomalous" but not of what class
        item.labels = [REVIEWED_ANOMALY_LABEL]
    return item


def apply_reviewed_boundaries(item: VideoItem, reviews: dict[str, ReviewRecord]) -> VideoItem:
    """Plan on the event boundaries reviewers corrected (matched by the times they were shown), so a re-run
    keeps their correction; the corrected events carry the annotation in `corrected_by`."""
    if not any(r.level == "event" and r.start_s is not None for r in reviews.values()):
        return item
    item = item.model_copy(deep=True)
    item.planned_events, item.planned_clips, stale = merge_segments(
        Tables(events=item.planned_events, clips=item.planned_clips), reviews)
    # the annotation file's texts describe the old times: drafted again for the new ones, then reviewed again
    item.captions = [c for c in item.captions if c.item_id not in stale]
    item.summaries = [x for x in item.summaries if x.item_id not in stale]
    item.qa = [q for q in item.qa if q.item_id not in stale]
    item.chains = [c for c in item.chains if c.item_id not in stale]
    return item


def plan_item(item: VideoItem, settings: PlanSettings, ws: Workspace) -> VideoItem:
    if item.status == "quarantined":
        return item
    reviews = winners(ws.video_reviews(item.video_id), load_rule(ws))
    return apply_reviewed_boundaries(plan_video(apply_reviewed_proposals(item, reviews), settings), reviews)


def cut_item(item: VideoItem, ws: Workspace, mode: CutMode, settings: CutSettings = CutSettings(),
             record_failures: bool = True, on_segment: Optional[Callable[[str, bool], None]] = None) -> VideoItem:
    """Cut every planned event and clip of one video, resuming finished ones.

    With `record_failures=False` the first failure raises (so an orchestrator can retry the video);
    with True, each failed segment becomes a `cut_failed` quarantine record and the rest go on. A full disk
    always raises (`DiskFullError`): it is not the video's fault, and every later segment would fail too.
    """
    item = item.model_copy(deep=True)
    if item.status == "quarantined":
        return item
    failed: set[str] = set()
    segments = [(e, ws.event_media(e.event_id), e.event_id, "event") for e in item.planned_events]
    segments += [(c, ws.clip_media(c.clip_id), c.clip_id, "clip") for c in item.planned_clips]
    for record, dst, segment_id, level in segments:
        try:
            result, fresh = cut_or_resume(ws, segment_id, dst, item.probe, record.start_s, record.end_s, mode, settings)
        except (CutError, OSError, TimeoutError) as exc:
            if not record_failures or is_disk_full(exc):
                raise
            failed.add(segment_id)
            item.quarantine.append(item.failure(segment_id, level, "cut", reasons.CUT_FAILED, str(exc)))
            continue
        record.cut_start_s, record.cut_end_s, record.cut_mode = result.start_s, result.end_s, result.mode
        record.n_frames, record.media_path = result.n_frames, ws.relative(Path(result.path))
        if on_segment:
            on_segment(segment_id, fresh)
    item.planned_events = [e for e in item.planned_events if e.event_id not in failed]
    item.planned_clips = [c for c in item.planned_clips if c.clip_id not in failed]
    kept = {e.event_id for e in item.planned_events} | {c.clip_id for c in item.planned_clips} | {item.video_id}
    item.captions = [c for c in item.captions if c.item_id in kept]
    item.summaries = [s for s in item.summaries if s.item_id in kept]
    item.status = "cut"
    return item


def failed_item(item: VideoItem, stage: str, error: BaseException) -> VideoItem:
    """A video whose shard failed for good: quarantined with the error, so the run goes on. A full disk is not
    the video's fault: its error is raised again instead, so the run stops (free space and run it again)."""
    if isinstance(error, DiskFullError):
        raise error
    if is_disk_full(error):
        raise DiskFullError(getattr(error, "filename", None) or "the workspace", note=str(error)) from error
    item = item.model_copy(deep=True)
    reason, where = SHARD_FAILURES.get(stage, (reasons.SHARD_FAILED, stage))
    detail = f"{type(error).__name__}: {error}"[:500]
    item.quarantine.append(item.failure(item.video_id, "video", where, reason, detail))
    item.status = "quarantined"
    return item


SHARD_FAILURES = {"cut": (reasons.CUT_FAILED, "cut"), "caption": (reasons.CAPTION_FAILED, "caption")}


# ---------------------------------------------------------------- shards: the unit of work a task runs
def probe_plan_cut_shard(ws: Workspace, video_ids: list[str], cut_mode: CutMode, plan: PlanSettings, cut: CutSettings,
                  record_failures: bool = True) -> ShardReport:
    """Probe, plan and cut a shard of videos, each read from and written back to the store."""
    report = ShardReport()

    def count(_: str, fresh: bool) -> None:
        if fresh:
            report.segments_cut += 1
        else:
            report.segments_resumed += 1

    for item in ws.iter_videos(video_ids):
        report.save(ws, cut_item(plan_item(probe_item(item), plan, ws), ws, cut_mode, cut, record_failures, count))
    return report.finish()


def caption_shard(ws: Workspace, video_ids: list[str], settings: CaptionSettings) -> ShardReport:
    """Caption the shard's clips, batched across its videos (model backends), or list which lack one."""
    report = ShardReport()
    for item in caption_items(list(ws.iter_videos(video_ids)), ws, make_captioner(settings, ws), settings):
        report.save(ws, item)
    return report.finish()


def motion_shard(ws: Workspace, video_ids: list[str]) -> ShardReport:
    """HAWK motion phrases of every caption and description; the record is then done."""
    report = ShardReport()
    for item in ws.iter_videos(video_ids):
        if item.status != "quarantined":
            item.motion_phrases = motion_records(item)
        item.advance("done")
        report.save(ws, item)
    return report.finish()


def verify_shard(ws: Workspace, video_ids: list[str], levels: tuple[Level, ...]) -> ShardReport:
    """The draft checks of the shard's texts at `levels` (clips after captioning; events and videos after the
    roll-up); the flags are stored with the record."""
    report = ShardReport()
    for item in ws.iter_videos(video_ids):
        report.save(ws, verify_item(item, levels))
    return report.finish()


def review_media_shard(ws: Workspace, video_ids: list[str], context_s: float) -> ShardReport:
    """Cut what reviewers watch (events with context, browser-playable videos) ahead of the push."""
    report = ShardReport()
    media = prepare_review_media(ws, Tables.of(ws.iter_videos(video_ids)), context_s)
    report.videos, report.segments_cut = len(video_ids), len(media)
    return report.finish()


def shards(video_ids: list[str], size: int) -> list[list[str]]:
    return [video_ids[i:i + size] for i in range(0, len(video_ids), size)]
