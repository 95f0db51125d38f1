"""Per-video stages the flow maps over (probe, cut) and the run's manifests and summary."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Callable, Optional

from pydantic import BaseModel

from hivau.schemas import reasons
from hivau.schemas.item import VideoItem
from hivau.schemas.records import CutMode, QuarantineRecord
from hivau.tasks.cut import CutError, CutResult, CutSettings, cut_segment, partial_path
from hivau.tasks.ingest import IngestReport
from hivau.tasks.probe import ProbeError, probe_video
from hivau.workspace import Workspace, atomic_write_bytes, atomic_write_json


def probe_item(item: VideoItem) -> VideoItem:
    """Probe the item's video; a broken file becomes a quarantined item, never an exception."""
    item = item.model_copy(deep=True)
    try:
        item.probe = probe_video(item.path, item.video_id, item.source_format, item.labels)
        item.status = "probed"
    except ProbeError as exc:
        item.quarantine.append(QuarantineRecord(item_id=item.video_id, video_id=item.video_id, level="video",
                                                reason=exc.reason, detail=exc.detail, stage="probe", source=item.source))
        item.status = "quarantined"
    return item


def _fingerprint(src: str, start: float, end: float, mode: CutMode, settings: CutSettings) -> str:
    stat = Path(src).stat()
    key = [str(Path(src).resolve()), stat.st_size, stat.st_mtime_ns, round(start, 6), round(end, 6), mode]
    if mode == "accurate":
        key += [settings.crf, settings.preset]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def cut_or_resume(ws: Workspace, segment_id: str, dst: Path, src: str, start: float, end: float, mode: CutMode,
                  fps: float, keyframes: list[float], settings: CutSettings) -> tuple[CutResult, bool]:
    """Cut one segment unless the same cut already finished; returns (result, was_cut_now)."""
    partial_path(dst).unlink(missing_ok=True)  # left by a run killed mid-cut; never a valid output
    fingerprint = _fingerprint(src, start, end, mode, settings)
    state_path = ws.segment_state(segment_id)
    if state_path.is_file() and dst.is_file():
        state = json.loads(state_path.read_text())
        if state.get("fingerprint") == fingerprint:
            return CutResult(**state["result"]), False
    result = cut_segment(src, dst, start, end, mode, fps, keyframes, settings)
    atomic_write_json(state_path, {"fingerprint": fingerprint, "result": result.__dict__})
    return result, True


def cut_item(item: VideoItem, ws: Workspace, mode: CutMode, settings: CutSettings = CutSettings(),
             record_failures: bool = True, on_segment: Optional[Callable[[str, bool], None]] = None) -> VideoItem:
    """Cut every planned event and clip of one video, resuming finished ones.

    With `record_failures=False` the first failure raises (so an orchestrator can retry the video);
    with True, each failed segment becomes a `cut_failed` quarantine record and the rest go on.
    """
    item = item.model_copy(deep=True)
    probe = item.probe
    failed: set[str] = set()
    segments = [(e, ws.event_media(e.event_id), e.event_id, "event") for e in item.planned_events]
    segments += [(c, ws.clip_media(c.clip_id), c.clip_id, "clip") for c in item.planned_clips]
    for record, dst, segment_id, level in segments:
        try:
            result, fresh = cut_or_resume(ws, segment_id, dst, probe.path, record.start_s, record.end_s, mode,
                                          probe.fps, probe.keyframe_times, settings)
        except (CutError, OSError, TimeoutError) as exc:
            if not record_failures:
                raise
            failed.add(segment_id)
            item.quarantine.append(QuarantineRecord(item_id=segment_id, video_id=item.video_id,
                                                    level=level,
                                                    reason=reasons.CUT_FAILED, detail=str(exc), stage="cut",
                                                    source=item.source))
            continue
        record.cut_start_s, record.cut_end_s, record.cut_mode = result.start_s, result.end_s, result.mode
        record.n_frames, record.media_path = result.n_frames, ws.relative(dst)
        if on_segment:
            on_segment(segment_id, fresh)
    item.planned_events = [e for e in item.planned_events if e.event_id not in failed]
    item.planned_clips = [c for c in item.planned_clips if c.clip_id not in failed]
    kept = {e.event_id for e in item.planned_events} | {c.clip_id for c in item.planned_clips} | {item.video_id}
    item.captions = [c for c in item.captions if c.item_id in kept]
    item.summaries = [s for s in item.summaries if s.item_id in kept]
    item.status = "cut"
    atomic_write_json(ws.video_state(item.video_id), item.model_dump(mode="json"))
    return item


class RunSummary(BaseModel):
    """Every input accounted for: entries = videos_processed + videos_quarantined."""

    entries: int
    videos_processed: int
    videos_quarantined: int
    events: int
    clips: int
    captions: int
    summaries: int
    qa_pairs: int = 0
    motion_phrases: int = 0
    texts_by_generator: dict[str, int] = {}
    quarantined_by_reason: dict[str, int]
    quarantined_by_level: dict[str, int]
    workspace: str

    def rows(self) -> list[dict]:
        rows = [{"metric": k, "value": v} for k, v in self.model_dump().items() if not isinstance(v, dict)]
        rows += [{"metric": f"quarantined:{k}", "value": v} for k, v in sorted(self.quarantined_by_reason.items())]
        rows += [{"metric": f"texts:{k}", "value": v} for k, v in sorted(self.texts_by_generator.items())]
        return rows


REVIEWED_ANOMALY_LABEL = "Anomaly"


def apply_reviewed_proposals(item: VideoItem, ws: Workspace) -> VideoItem:
    """An unannotated video whose reviewer kept or drew anomalous spans (from the scorer's proposals) is
    planned on those spans, as if the annotation file had given them."""
    from hivau.schemas.item import AnnotatedEvent
    from hivau.tasks.review import read_review

    if item.events or item.spans:
        return item
    review = read_review(ws, "video", item.video_id)
    if review is None or not review.events or review.verdict == "reject":
        return item
    item = item.model_copy(deep=True)
    item.events = [AnnotatedEvent(start_s=a, end_s=b) for a, b in review.events]
    if not item.is_anomaly:  # the reviewer said "anomalous" but not of what class
        item.labels = [REVIEWED_ANOMALY_LABEL]
    return item


def apply_reviewed_boundaries(item: VideoItem, ws: Workspace) -> VideoItem:
    """Plan on the event boundaries reviewers corrected, so a re-run keeps their correction."""
    from hivau.tasks.merge import merge_segments
    from hivau.tasks.review import Tables, read_review

    reviews = {e.event_id: r for e in item.planned_events
               if (r := read_review(ws, "event", e.event_id)) is not None and r.start_s is not None}
    if not reviews:
        return item
    item = item.model_copy(deep=True)
    item.planned_events, item.planned_clips, _ = merge_segments(
        Tables(events=item.planned_events, clips=item.planned_clips), reviews)
    return item


def write_manifests(ws: Workspace, report: IngestReport, items: list[VideoItem]) -> RunSummary:
    """Write the manifest tables and the run summary for this run's items."""
    quarantine = list(report.quarantine) + [q for it in items for q in it.quarantine]
    good = [it for it in items if it.status != "quarantined"]
    ws.write_table("videos", [it.probe for it in good])
    drafted = {"events": [e for it in good for e in it.planned_events],
               "clips": [c for it in good for c in it.planned_clips],
               "captions": [c for it in good for c in it.captions],
               "summaries": [s for it in good for s in it.summaries],
               "qa": [p for it in good for p in it.qa]}
    for table, rows in drafted.items():
        ws.write_table(table, rows, drafts=True)  # the build's own words, kept apart from the reviewers'
    ws.write_table("motion_phrases", [m for it in good for m in it.motion_phrases])
    ws.write_table("quarantine", quarantine)
    from hivau.tasks.merge import merge_workspace

    merge_workspace(ws)  # manifests = drafts + any reviews already pulled: a re-run never drops human work
    summary = RunSummary(
        entries=report.n_entries, videos_processed=len(good),
        videos_quarantined=report.n_entries - len(good),
        events=sum(len(it.planned_events) for it in good), clips=sum(len(it.planned_clips) for it in good),
        captions=sum(len(it.captions) for it in good), summaries=sum(len(it.summaries) for it in good),
        qa_pairs=sum(len(it.qa) for it in good), motion_phrases=sum(len(it.motion_phrases) for it in good),
        texts_by_generator=dict(Counter(f"{t.__class__.__name__.lower()}:{t.generator.backend}" for it in good
                                        for t in [*it.captions, *it.summaries, *it.qa])),
        quarantined_by_reason=dict(Counter(q.reason for q in quarantine)),
        quarantined_by_level=dict(Counter(q.level for q in quarantine)), workspace=str(ws.root),
    )
    atomic_write_json(ws.manifests / "summary.json", summary.model_dump())
    write_quarantine_report(ws, quarantine)
    return summary


def write_quarantine_report(ws: Workspace, quarantine: list[QuarantineRecord]) -> Path:
    lines = ["# Quarantine report", "", f"{len(quarantine)} records.", "",
             "| item | level | reason | stage | detail |", "|---|---|---|---|---|"]
    for q in quarantine:
        detail = q.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {q.item_id} | {q.level} | {q.reason} | {q.stage} | {detail} |")
    path = ws.manifests / "quarantine.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


