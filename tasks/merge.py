"""Merge reviews into the drafts and write the manifests: human text wins, and every row says how it got there.

`merge` is pure (tables in, tables out); `merge_workspace` adds the I/O: it streams the store's records and
the stored reviews into a new manifest set, re-cutting segments whose boundaries a reviewer moved.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Optional

from pydantic import BaseModel, Field

from hivau.schemas.item import BatchRecord, Tables, VideoItem
from hivau.schemas.records import (
    HUMAN, Caption, Clip, Event, Provenance, QAPair, QuarantineRecord, ReviewRecord, Summary,
)
from hivau.tasks.cut import CutSettings, cut_or_resume
from hivau.tasks.texts import QA_TYPES
from hivau.workspace import Workspace

MERGED_TABLES = ("events", "clips", "captions", "summaries", "qa")

TIME_TOLERANCE_S = 1e-3


def _norm(text: Optional[str]) -> str:
    return " ".join((text or "").split())


def judged(review: ReviewRecord, changed: bool) -> Provenance:
    if review.verdict == "reject":
        return "rejected"
    return "edited" if changed else "accepted"


def reclip(clips: list[Clip], start_s: float, end_s: float) -> tuple[list[Clip], set[str]]:
    """Clamp an event's clips into its corrected bounds; clips left with no time are dropped.

    Returns the kept clips and the ids of clips whose times changed or that were dropped.
    """
    kept, touched = [], set()
    for clip in clips:
        s, e = max(clip.start_s, start_s), min(clip.end_s, end_s)
        if e - s <= TIME_TOLERANCE_S:
            touched.add(clip.clip_id)
            continue
        if abs(s - clip.start_s) > TIME_TOLERANCE_S or abs(e - clip.end_s) > TIME_TOLERANCE_S:
            touched.add(clip.clip_id)
            clip = clip.model_copy(update={"start_s": s, "end_s": e, "provenance": "boundaries_corrected",
                                           "cut_start_s": None, "cut_end_s": None, "n_frames": None,
                                           "notes": [*clip.notes, f"clamped to its event's reviewed bounds "
                                                                  f"[{start_s:.3f}, {end_s:.3f}]"]})
        kept.append(clip)
    return kept, touched


def pending_correction(event: Event, review: Optional[ReviewRecord]) -> bool:
    """The reviewer moved the boundaries and the drafts were not yet rebuilt on the new ones."""
    return bool(review and review.start_s is not None and (
        abs(event.start_s - review.start_s) > TIME_TOLERANCE_S or abs(event.end_s - review.end_s) > TIME_TOLERANCE_S))


def merge_segments(drafts: Tables, reviews: dict[str, ReviewRecord]) -> tuple[list[Event], list[Clip], set[str]]:
    """Events and clips with reviewed boundaries applied; returns the ids whose texts are now stale."""
    clips_by_event: dict[str, list[Clip]] = {}
    for clip in drafts.clips:
        clips_by_event.setdefault(clip.event_id, []).append(clip)
    events, clips, stale = [], [], set()
    for event in drafts.events:
        review = reviews.get(event.event_id)
        own = clips_by_event.get(event.event_id, [])
        if pending_correction(event, review):
            note = f"boundaries moved in review (annotation {review.annotation_id}) from [{event.start_s:.3f}, {event.end_s:.3f}]"
            event = event.model_copy(update={"start_s": review.start_s, "end_s": review.end_s,
                                             "provenance": "boundaries_corrected", "cut_start_s": None,
                                             "cut_end_s": None, "n_frames": None, "notes": [*event.notes, note]})
            own, touched = reclip(own, review.start_s, review.end_s)
            stale |= touched | {event.event_id}
        elif review and review.start_s is not None:
            event = event.model_copy(update={"provenance": "boundaries_corrected"})  # already rebuilt on them
        events.append(event)
        clips += own
    return events, clips, stale


def merge_caption(draft: Optional[Caption], review: Optional[ReviewRecord]) -> Optional[Caption]:
    if review is None:
        return draft
    text = review.text("caption")
    if draft is None:  # the reviewer wrote a caption the build could not draft
        if not text or review.verdict == "reject":
            return None
        return Caption(item_id=review.item_id, level="clip", video_id=review.video_id, text=text,
                       provenance="edited", generator=HUMAN)
    new = text or draft.text
    return draft.model_copy(update={"text": new, "provenance": judged(review, _norm(new) != _norm(draft.text))})


def merge_summary(draft: Optional[Summary], review: Optional[ReviewRecord]) -> Optional[Summary]:
    if review is None:
        return draft
    fields = {"text": review.text("summary"), **{n: review.text(n) for n in ("judgement", "description", "analysis")}}
    if draft is None:
        if not fields["text"] or review.verdict == "reject":
            return None
        return Summary(item_id=review.item_id, level=review.level, video_id=review.video_id, provenance="edited",
                       generator=HUMAN, **fields)
    new = {k: v or getattr(draft, k) for k, v in fields.items()}
    changed = any(_norm(v) != _norm(getattr(draft, k)) for k, v in new.items())
    return draft.model_copy(update={**new, "provenance": judged(review, changed)})


def merge_qa(drafts: list[QAPair], review: Optional[ReviewRecord], level, video_id: str) -> list[QAPair]:
    if review is None:
        return drafts
    out = []
    for pair in drafts:
        q, a = review.text(f"q_{pair.qa_type}") or pair.question, review.text(f"a_{pair.qa_type}") or pair.answer
        changed = _norm(q) != _norm(pair.question) or _norm(a) != _norm(pair.answer)
        out.append(pair.model_copy(update={"question": q, "answer": a, "provenance": judged(review, changed)}))
    have = {p.qa_type for p in drafts}
    if review.verdict != "reject":
        for qa_type in QA_TYPES:  # pairs the reviewer added where the build drafted none
            q, a = review.text(f"q_{qa_type}"), review.text(f"a_{qa_type}")
            if qa_type not in have and q and a:
                out.append(QAPair(item_id=review.item_id, level=level, video_id=video_id, qa_type=qa_type,
                                  question=q, answer=a, provenance="edited", generator=HUMAN))
    return out


def _merge_rows(drafts: list, reviews: dict[str, ReviewRecord], levels: tuple[str, ...], stale: set[str],
                merge_one) -> list:
    """Captions or summaries: each draft with its review, plus rows reviewers wrote where none was drafted."""
    by_id = {row.item_id: row for row in drafts}
    extra = [r.item_id for r in reviews.values() if r.level in levels and r.item_id not in by_id]
    out = []
    for item_id in list(by_id) + extra:
        review = reviews.get(item_id)
        rejected = review is not None and review.verdict == "reject"
        if item_id in stale and not rejected:  # a reviewer's rejection says more than "times moved"
            if item_id in by_id:
                out.append(by_id[item_id].model_copy(update={"provenance": "boundaries_corrected"}))
            continue
        merged = merge_one(by_id.get(item_id), review)
        if merged is not None:
            out.append(merged)
    return out


def merge(drafts: Tables, reviews: dict[str, ReviewRecord]) -> Tables:
    """The drafted tables with every stored review applied (pure)."""
    events, clips, stale = merge_segments(drafts, reviews)

    captions = _merge_rows(drafts.captions, reviews, ("clip",), stale, merge_caption)
    summaries = _merge_rows(drafts.summaries, reviews, ("event", "video"), stale, merge_summary)
    pairs: dict[str, list[QAPair]] = {}
    for pair in drafts.qa:
        pairs.setdefault(pair.item_id, []).append(pair)
    out_qa = []
    extra = [r.item_id for r in reviews.values() if r.level in ("event", "video") and r.item_id not in pairs]
    for item_id in list(pairs) + extra:
        own = pairs.get(item_id, [])
        if item_id in stale:
            out_qa += [p.model_copy(update={"provenance": "boundaries_corrected"}) for p in own]
            continue
        review = reviews.get(item_id)
        out_qa += merge_qa(own, review, review.level if review else own[0].level,
                           review.video_id if review else own[0].video_id)
    return replace(drafts, events=events, clips=clips, captions=captions, summaries=summaries, qa=out_qa)


class RunSummary(BaseModel):
    """Every input accounted for: entries = videos_processed + videos_quarantined (+ videos_unfinished)."""

    entries: int = 0
    videos_processed: int = 0
    videos_quarantined: int = 0
    videos_unfinished: int = 0  # a build stopped before they were done: run it again
    events: int = 0
    clips: int = 0
    captions: int = 0
    summaries: int = 0
    qa_pairs: int = 0
    motion_phrases: int = 0
    texts_by_generator: dict[str, int] = Field(default_factory=dict)
    quarantined_by_reason: dict[str, int] = Field(default_factory=dict)
    quarantined_by_level: dict[str, int] = Field(default_factory=dict)
    workspace: str = ""

    def add(self, item: VideoItem) -> None:
        """Count one stored record (its drafts, as the build wrote them)."""
        if item.status not in FINAL:
            self.videos_unfinished += 1
            return
        self.add_quarantine(item.quarantine)
        if item.status == "quarantined":
            self.videos_quarantined += 1
            return
        self.videos_processed += 1
        self.events, self.clips = self.events + len(item.planned_events), self.clips + len(item.planned_clips)
        self.captions, self.summaries = self.captions + len(item.captions), self.summaries + len(item.summaries)
        self.qa_pairs, self.motion_phrases = self.qa_pairs + len(item.qa), self.motion_phrases + len(item.motion_phrases)
        for t in [*item.captions, *item.summaries, *item.qa]:
            key = f"{t.__class__.__name__.lower()}:{t.generator.backend}"
            self.texts_by_generator[key] = self.texts_by_generator.get(key, 0) + 1

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
        row.media_path = ws.relative(dst)
        if fresh:
            done.append(seg_id)
    return done


def _entries_of(batch: BatchRecord, owner: dict[str, Optional[str]]) -> tuple[int, list[QuarantineRecord]]:
    """A batch's entries and ingest rejections, less those whose video another batch now owns."""
    def mine(key: str) -> bool:
        return owner.get(key, batch.batch_id) in (batch.batch_id, None)

    moved = sum(1 for v in batch.video_ids if not mine(v))
    rejected = [q for q in batch.quarantine if mine(q.item_id)]
    return batch.n_entries - moved - (len(batch.quarantine) - len(rejected)), rejected


def merge_workspace(ws: Workspace, reviews: Optional[dict[str, ReviewRecord]] = None) -> MergeResult:
    """Write the manifests as one new set: every finished record of every batch in the store, merged with the
    stored reviews (human text wins), plus the quarantine table, the run summary and its report.

    Records are read one video at a time; only files whose content changed are replaced.
    `reviews` defaults to every review stored in the workspace (a caller that has them passes them in).
    """
    result = MergeResult()
    reviews = ws.stored_reviews() if reviews is None else reviews
    by_video: dict[str, dict[str, ReviewRecord]] = {}
    for item_id, review in reviews.items():
        by_video.setdefault(review.video_id, {})[item_id] = review
    batches = ws.batches()
    owner: dict[str, Optional[str]] = {}
    quarantine: list[QuarantineRecord] = []
    provenance: Counter = Counter()
    per_batch = {b.batch_id: RunSummary(workspace=str(ws.root)) for b in batches}
    total = RunSummary(workspace=str(ws.root))
    with ws.manifest_set() as out:
        for item in ws.iter_videos():
            owner[item.video_id] = item.batch
            total.add(item)
            per_batch.setdefault(item.batch or "", RunSummary(workspace=str(ws.root))).add(item)
            if item.status not in FINAL:
                continue
            quarantine += item.quarantine
            if item.status == "quarantined":
                continue
            merged = merge(Tables.of([item]), by_video.get(item.video_id, {}))
            result.recut += recut_corrected(ws, merged)
            for table in ("videos", *MERGED_TABLES):
                out.add(table, getattr(merged, table))
            out.add("motion_phrases", item.motion_phrases)
            provenance.update(f"{table}:{row.provenance}" for table in ("captions", "summaries", "qa")
                              for row in getattr(merged, table))
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
        out.add("reviews", sorted(reviews.values(), key=lambda r: (r.level, r.item_id)))
        out.write_json("summary.json", {**total.model_dump(),
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
