"""The manifest writer: every finished record of the store merged with the stored reviews into one new manifest set,
re-cutting segments whose boundaries a reviewer moved; and a review pull followed by that merge."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, Field

from hivau.schemas import reasons
from hivau.schemas.item import BatchRecord, Tables, VideoItem
from hivau.schemas.records import MotionPhraseRecord, QuarantineRecord, ReviewRecord
from hivau.tasks.build.cut import CutSettings, cut_or_resume
from hivau.tasks.review.labelstudio import LabelStudio
from hivau.tasks.review.merge import MERGED_TABLES, ReviewRule, load_rule, merge, winners
from hivau.tasks.review.projects import ReviewSettings
from hivau.tasks.review.pull import PullReport, pull
from hivau.tasks.text.motion import merged_motion_records
from hivau.workspace import Workspace, atomic_write_json


class RunSummary(BaseModel):
    """Every input accounted for: entries = videos_processed + videos_quarantined (+ videos_unfinished)."""

    entries: int = 0
    videos_processed: int = 0
    videos_quarantined: int = 0
    videos_unfinished: int = 0  # a build stopped before they were done: run it again
    unfinished_by_status: dict[str, int] = Field(default_factory=dict)  # where the stopped build left them
    events: int = 0
    clips: int = 0
    captions: int = 0
    summaries: int = 0
    qa_pairs: int = 0
    chains: int = 0  # reasoning chains of events and videos
    motion_phrases: int = 0
    reviews: int = 0  # stored Label Studio annotations, every annotator's
    reviews_unmatched: int = 0  # "N reviews no longer match a segment": kept, listed, never moved to other times
    texts_by_generator: dict[str, int] = Field(default_factory=dict)
    # the draft checks: failed checks as `level:check:severity`, and the LLM drafts asked again after one
    checks_by_level: dict[str, int] = Field(default_factory=dict)
    flagged_error: int = 0  # texts with at least one error flag
    flagged_warn: int = 0  # texts with warnings only
    drafts_repaired: int = 0
    drafts_still_failing: int = 0
    quarantined_by_reason: dict[str, int] = Field(default_factory=dict)
    quarantined_by_level: dict[str, int] = Field(default_factory=dict)
    workspace: str = ""

    def add(self, item: VideoItem) -> None:
        """Count one stored record (its drafts, as the build wrote them)."""
        if item.status not in FINAL:
            self.videos_unfinished += 1
            self.unfinished_by_status[item.status] = self.unfinished_by_status.get(item.status, 0) + 1
            return
        self.add_quarantine(item.quarantine)
        if item.status == "quarantined":
            self.videos_quarantined += 1
            return
        self.videos_processed += 1
        self.events, self.clips = self.events + len(item.planned_events), self.clips + len(item.planned_clips)
        self.captions, self.summaries = self.captions + len(item.captions), self.summaries + len(item.summaries)
        self.qa_pairs, self.motion_phrases = self.qa_pairs + len(item.qa), self.motion_phrases + len(item.motion_phrases)
        self.chains += len(item.chains)
        for t in [*item.captions, *item.summaries, *item.qa, *item.chains]:
            key = f"{t.__class__.__name__.lower()}:{t.generator.backend}"
            self.texts_by_generator[key] = self.texts_by_generator.get(key, 0) + 1
        self.add_checks(item)

    def add_checks(self, item: VideoItem) -> None:
        worst: dict[tuple[str, str], str] = {}
        for c in item.checks:
            key = f"{c.level}:{c.check}:{c.severity}"
            self.checks_by_level[key] = self.checks_by_level.get(key, 0) + 1
            text = (c.item_id, c.target)
            worst[text] = "error" if c.severity == "error" or worst.get(text) == "error" else "warn"
        self.flagged_error += sum(1 for s in worst.values() if s == "error")
        self.flagged_warn += sum(1 for s in worst.values() if s == "warn")
        self.drafts_repaired += sum(1 for r in item.repairs if r.repaired)
        self.drafts_still_failing += sum(1 for r in item.repairs if not r.repaired)

    def add_quarantine(self, records: list[QuarantineRecord]) -> None:
        for q in records:
            self.quarantined_by_reason[q.reason] = self.quarantined_by_reason.get(q.reason, 0) + 1
            self.quarantined_by_level[q.level] = self.quarantined_by_level.get(q.level, 0) + 1


FINAL = ("done", "quarantined")


class MergeResult(BaseModel):
    tables_rewritten: list[str] = Field(default_factory=list)
    recut: list[str] = Field(default_factory=list)
    provenance: dict[str, int] = Field(default_factory=dict)
    summary: RunSummary = Field(default_factory=RunSummary)
    batches: dict[str, RunSummary] = Field(default_factory=dict)


def recut_corrected(ws: Workspace, tables: Tables) -> list[str]:
    """Cut the media of every event and clip whose reviewed boundaries moved (resumed when already cut)."""
    videos = {v.video_id: v for v in tables.videos}
    done = []
    for row, seg_id, dst in [(e, e.event_id, ws.event_media(e.event_id)) for e in tables.events] + \
                            [(c, c.clip_id, ws.clip_media(c.clip_id)) for c in tables.clips]:
        if row.provenance != "boundaries_corrected" or row.cut_start_s is not None or row.video_id not in videos:
            continue
        result, fresh = cut_or_resume(ws, seg_id, dst, videos[row.video_id], row.start_s, row.end_s,
                                      row.cut_mode or "accurate", CutSettings())
        row.cut_start_s, row.cut_end_s, row.n_frames = result.start_s, result.end_s, result.n_frames
        row.media_path = ws.relative(Path(result.path))
        if fresh:
            done.append(seg_id)
    return done


def merged_motion(ws: Workspace, video_id: str, merged: Tables) -> list[MotionPhraseRecord]:
    """The merged texts' motion phrases; those of edited texts come from the workspace's cache once parsed."""
    if not any(t.provenance == "edited" for t in [*merged.captions, *merged.summaries]):
        return merged_motion_records(merged, {})[0]  # drafts' phrases only: nothing to parse or keep
    path = ws.motion_cache(video_id)
    known = json.loads(path.read_text()) if path.is_file() else {}
    records, used = merged_motion_records(merged, known)
    if used != known:
        atomic_write_json(path, used)
    return records


def _entries_of(batch: BatchRecord, owner: dict[str, Optional[str]]) -> tuple[int, list[QuarantineRecord]]:
    """A batch's entries and ingest rejections, less those whose video another batch now owns."""
    def mine(key: str) -> bool:
        return owner.get(key, batch.batch_id) in (batch.batch_id, None)

    moved = sum(1 for v in batch.video_ids if not mine(v))
    # a split conflict is this batch's rejection of a video another batch owns
    rejected = [q for q in batch.quarantine if mine(q.item_id) or q.reason == reasons.SPLIT_CONFLICT]
    return batch.n_entries - moved - (len(batch.quarantine) - len(rejected)), rejected


def write_manifests(ws: Workspace, rule: Optional[ReviewRule] = None) -> MergeResult:
    """Write the manifests as one new set: every finished record of every batch in the store, merged with the
    stored reviews (human text wins), plus the quarantine table, every annotation, the reviews that match no
    segment of the current plan, the run summary and its report.

    Records and reviews are read one video at a time; only files whose content changed are replaced.
    `rule` (which annotation counts when several exist) defaults to the one recorded in the workspace.
    """
    result = MergeResult()
    rule = rule or load_rule(ws)
    batches = ws.batches()
    owner: dict[str, Optional[str]] = {}
    quarantine: list[QuarantineRecord] = []
    provenance: Counter = Counter()
    per_batch = {b.batch_id: RunSummary(workspace=str(ws.root)) for b in batches}
    total = RunSummary(workspace=str(ws.root))

    with ws.manifest_set() as out:
        def unmatched(annotations: list[ReviewRecord], used: set[int]) -> None:
            """Annotations of segments this plan no longer has: kept in the store, listed, never re-attached."""
            used_keys = {a.key for a in annotations if a.annotation_id in used}
            lost = [a for a in annotations if a.key not in used_keys and not a.was_cancelled]
            out.add("reviews", annotations)
            out.add("reviews_unmatched", lost)
            total.reviews += len(annotations)
            total.reviews_unmatched += len(lost)

        for item in ws.iter_videos():
            owner[item.video_id] = item.batch
            total.add(item)
            per_batch.setdefault(item.batch or "", RunSummary(workspace=str(ws.root))).add(item)
            annotations = ws.video_reviews(item.video_id)
            if item.status not in FINAL:  # a build stopped before this video was done: its reviews wait for it
                unmatched(annotations, {a.annotation_id for a in annotations})
                continue
            quarantine += item.quarantine
            if item.status == "quarantined":
                unmatched(annotations, set())
                continue
            merged, used = merge(Tables.of([item]), winners(annotations, rule))
            unmatched(annotations, used)
            result.recut += recut_corrected(ws, merged)
            for table in ("videos", *MERGED_TABLES):
                out.add(table, getattr(merged, table))
            out.add("motion_phrases", merged_motion(ws, item.video_id, merged))
            out.add("checks", item.checks)
            provenance.update(f"{table}:{row.provenance}" for table in ("captions", "summaries", "qa", "chains")
                              for row in getattr(merged, table))
        for video_id in ws.review_video_ids():  # reviews of videos no batch holds any more
            if video_id not in owner:
                unmatched(ws.video_reviews(video_id), set())
        for batch in batches:
            entries, rejected = _entries_of(batch, owner)
            summary = per_batch[batch.batch_id]
            summary.entries = entries
            summary.videos_quarantined = entries - summary.videos_processed - summary.videos_unfinished
            summary.add_quarantine(rejected)
            total.entries += entries
            total.add_quarantine(rejected)
            quarantine += rejected
        total.videos_quarantined = total.entries - total.videos_processed - total.videos_unfinished
        out.add("quarantine", quarantine)
        out.write_json("summary.json", {**total.model_dump(), "review_rule": rule.model_dump(mode="json"),
                                        "batches": {k: v.model_dump() for k, v in per_batch.items() if k}})
        out.write_bytes("quarantine.md", quarantine_report(quarantine).encode())
    result.tables_rewritten = [name.removesuffix(".parquet") for name in out.changed if name.endswith(".parquet")]
    result.provenance, result.summary, result.batches = dict(provenance), total, per_batch
    return result


def quarantine_report(quarantine: list[QuarantineRecord]) -> str:
    lines = ["# Quarantine report", "", f"{len(quarantine)} records.", "",
             "| item | level | reason | stage | detail |", "|---|---|---|---|---|"]
    for q in quarantine:
        detail = q.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {q.item_id} | {q.level} | {q.reason} | {q.stage} | {detail} |")
    return "\n".join(lines) + "\n"


def pull_and_merge(ws: Workspace, ls: LabelStudio, settings: ReviewSettings, lock_wait_s: float = 0) -> PullReport:
    """Pull every annotation, then rewrite the manifests with them (one lock over both)."""
    with ws.lock("review pull", lock_wait_s):
        report = pull(ws, ls, settings)
        merged = write_manifests(ws, settings.rule)
    report.tables_rewritten, report.recut, report.provenance = merged.tables_rewritten, merged.recut, merged.provenance
    report.reviews_unmatched = merged.summary.reviews_unmatched
    return report
