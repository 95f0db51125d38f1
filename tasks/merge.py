"""Merge reviews into the drafts and write the manifests: human text wins, and every row says how it got there.

`merge` is pure (tables in, tables out); `merge_workspace` adds the I/O: it streams the store's records and
the stored reviews into a new manifest set, re-cutting segments whose boundaries a reviewer moved.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Iterable, Literal, Optional

from pydantic import BaseModel, Field

from hivau.schemas.item import BatchRecord, Tables, VideoItem
from hivau.schemas.records import (
    HUMAN, Caption, Clip, Event, Level, Provenance, QAPair, QuarantineRecord, ReviewRecord, Summary, segment_key,
)
from hivau.tasks.cut import CutSettings, cut_or_resume
from hivau.tasks.texts import QA_TYPES
from hivau.workspace import Workspace, atomic_write_json

MERGED_TABLES = ("events", "clips", "captions", "summaries", "qa")

TIME_TOLERANCE_S = 1e-3


def _norm(text: Optional[str]) -> str:
    return " ".join((text or "").split())


def judged(review: ReviewRecord, changed: bool) -> Provenance:
    if review.verdict == "reject":
        return "rejected"
    return "edited" if changed else "accepted"


class ReviewRule(BaseModel):
    """Which annotation counts when several people reviewed one item. Recorded in the workspace at each pull,
    so a build's merge applies the same rule, and named in each release's card."""

    rule: Literal["latest", "precedence"] = Field(
        "latest", description="latest: the most recently updated annotation that was not cancelled; precedence: "
                              "the latest of the first annotator in `precedence` who reviewed the item, else latest")
    precedence: list[int] = Field(default_factory=list, description="Label Studio user ids, most trusted first")

    def pick(self, annotations: list[ReviewRecord]) -> Optional[ReviewRecord]:
        kept = [a for a in annotations if not a.was_cancelled]
        if not kept:
            return None
        if self.rule == "precedence":
            for user in self.precedence:
                own = [a for a in kept if a.completed_by == user]
                if own:
                    return _latest(own)
        return _latest(kept)


def _latest(annotations: list[ReviewRecord]) -> ReviewRecord:
    return max(annotations, key=lambda a: (a.updated_at or a.created_at, a.annotation_id))


RULE_FILE = "review_rule.json"


def load_rule(ws: Workspace) -> ReviewRule:
    path = ws.state / RULE_FILE
    return ReviewRule.model_validate_json(path.read_bytes()) if path.is_file() else ReviewRule()


def save_rule(ws: Workspace, rule: ReviewRule) -> None:
    atomic_write_json(ws.state / RULE_FILE, rule.model_dump(mode="json"))


def winners(annotations: Iterable[ReviewRecord], rule: ReviewRule) -> dict[str, ReviewRecord]:
    """The annotation that counts for each reviewed segment, by segment key (video and times)."""
    groups: dict[str, list[ReviewRecord]] = {}
    for a in annotations:
        groups.setdefault(a.key, []).append(a)
    return {key: w for key, group in groups.items() if (w := rule.pick(group)) is not None}


def review_of(reviews: dict[str, ReviewRecord], level: Level, video_id: str, item_id: str,
              start_s: Optional[float] = None, end_s: Optional[float] = None) -> Optional[ReviewRecord]:
    """The review of a segment with these times (reviews pulled before spans were recorded: by position)."""
    return reviews.get(segment_key(level, video_id, start_s, end_s)) or reviews.get(f"id|{level}|{item_id}")


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


Stale = dict[str, tuple[Level, str, float, float]]  # item id -> (level, video, times before the move)


def merge_segments(drafts: Tables, reviews: dict[str, ReviewRecord]) -> tuple[list[Event], list[Clip], Stale]:
    """Events and clips with reviewed boundaries applied; returns the items whose texts are now stale, with
    the times they had.

    A review belongs to the event whose times it was shown; moving them re-times the event (and clamps its
    clips) and records the annotation in `corrected_by`, and every text of the old span becomes stale.
    """
    clips_by_event: dict[str, list[Clip]] = {}
    for clip in drafts.clips:
        clips_by_event.setdefault(clip.event_id, []).append(clip)
    events, clips, stale = [], [], {}
    for event in drafts.events:
        review = review_of(reviews, "event", event.video_id, event.event_id, event.start_s, event.end_s)
        own = clips_by_event.get(event.event_id, [])
        if pending_correction(event, review):
            stale[event.event_id] = ("event", event.video_id, event.start_s, event.end_s)
            note = f"boundaries moved in review (annotation {review.annotation_id}) from [{event.start_s:.3f}, {event.end_s:.3f}]"
            event = event.model_copy(update={"start_s": review.start_s, "end_s": review.end_s,
                                             "provenance": "boundaries_corrected", "corrected_by": review.annotation_id,
                                             "cut_start_s": None, "cut_end_s": None, "n_frames": None,
                                             "notes": [*event.notes, note]})
            before = {c.clip_id: ("clip", c.video_id, c.start_s, c.end_s) for c in own}
            own, touched = reclip(own, review.start_s, review.end_s)
            stale.update({clip_id: before[clip_id] for clip_id in touched})
        elif review and review.start_s is not None:  # a positional review whose move the plan already carries
            event = event.model_copy(update={"provenance": "boundaries_corrected"})
            stale[event.event_id] = ("event", event.video_id, event.start_s, event.end_s)
        events.append(event)
        clips += own
    return events, clips, stale


def item_reviews(events: list[Event], clips: list[Clip], video_ids: Iterable[str], stale: Stale,
                 reviews: dict[str, ReviewRecord]) -> dict[str, ReviewRecord]:
    """Item id -> the review of exactly its current times; stale items (times just moved) have none."""
    out = {}
    for level, rows in (("event", [(e.event_id, e) for e in events]), ("clip", [(c.clip_id, c) for c in clips])):
        for item_id, row in rows:
            if item_id not in stale and (r := review_of(reviews, level, row.video_id, item_id, row.start_s, row.end_s)):
                out[item_id] = r
    for video_id in video_ids:
        if r := review_of(reviews, "video", video_id, video_id):
            out[video_id] = r
    return out


def merge_caption(item_id: str, draft: Optional[Caption], review: Optional[ReviewRecord]) -> Optional[Caption]:
    if review is None:
        return draft
    text = review.text("caption")
    if draft is None:  # the reviewer wrote a caption the build could not draft
        if not text or review.verdict == "reject":
            return None
        return Caption(item_id=item_id, level="clip", video_id=review.video_id, text=text,
                       provenance="edited", generator=HUMAN, annotation_id=review.annotation_id)
    new = text or draft.text
    return draft.model_copy(update={"text": new, "provenance": judged(review, _norm(new) != _norm(draft.text)),
                                    "annotation_id": review.annotation_id})


def merge_summary(item_id: str, draft: Optional[Summary], review: Optional[ReviewRecord]) -> Optional[Summary]:
    if review is None:
        return draft
    fields = {"text": review.text("summary"), **{n: review.text(n) for n in ("judgement", "description", "analysis")}}
    if draft is None:
        if not fields["text"] or review.verdict == "reject":
            return None
        return Summary(item_id=item_id, level=review.level, video_id=review.video_id, provenance="edited",
                       generator=HUMAN, annotation_id=review.annotation_id, **fields)
    new = {k: v or getattr(draft, k) for k, v in fields.items()}
    changed = any(_norm(v) != _norm(getattr(draft, k)) for k, v in new.items())
    return draft.model_copy(update={**new, "provenance": judged(review, changed),
                                    "annotation_id": review.annotation_id})


def merge_qa(item_id: str, drafts: list[QAPair], review: Optional[ReviewRecord], level, video_id: str) -> list[QAPair]:
    if review is None:
        return drafts
    out = []
    for pair in drafts:
        q, a = review.text(f"q_{pair.qa_type}") or pair.question, review.text(f"a_{pair.qa_type}") or pair.answer
        changed = _norm(q) != _norm(pair.question) or _norm(a) != _norm(pair.answer)
        out.append(pair.model_copy(update={"question": q, "answer": a, "provenance": judged(review, changed),
                                           "annotation_id": review.annotation_id}))
    have = {p.qa_type for p in drafts}
    if review.verdict != "reject":
        for qa_type in QA_TYPES:  # pairs the reviewer added where the build drafted none
            q, a = review.text(f"q_{qa_type}"), review.text(f"a_{qa_type}")
            if qa_type not in have and q and a:
                out.append(QAPair(item_id=item_id, level=level, video_id=video_id, qa_type=qa_type,
                                  question=q, answer=a, provenance="edited", generator=HUMAN,
                                  annotation_id=review.annotation_id))
    return out


def stale_row(row, old_review: Optional[ReviewRecord]):
    """A text of a span whose times just moved: out of releases until reviewed again; a reviewer's rejection
    of it stands (it says more than "the times moved")."""
    if old_review is not None and old_review.verdict == "reject":
        return row.model_copy(update={"provenance": "rejected", "annotation_id": old_review.annotation_id})
    return row.model_copy(update={"provenance": "boundaries_corrected"})


def _merge_rows(drafts: list, reviews: dict[str, ReviewRecord], levels: tuple[str, ...], stale: Stale,
                old_reviews: dict[str, ReviewRecord], merge_one) -> list:
    """Captions or summaries: each draft with its item's review, plus rows reviewers wrote where none was drafted."""
    by_id = {row.item_id: row for row in drafts}
    extra = [item_id for item_id, r in reviews.items() if r.level in levels and item_id not in by_id]
    out = []
    for item_id in list(by_id) + extra:
        if item_id in stale:  # its times moved: what was written or reviewed for the old span no longer holds
            if item_id in by_id:
                out.append(stale_row(by_id[item_id], old_reviews.get(item_id)))
            continue
        merged = merge_one(item_id, by_id.get(item_id), reviews.get(item_id))
        if merged is not None:
            out.append(merged)
    return out


def merge(drafts: Tables, reviews: dict[str, ReviewRecord]) -> tuple[Tables, set[int]]:
    """The drafted tables with the stored reviews applied (pure); `reviews` are the winners by segment key.

    Returns the tables and the annotation ids that were applied (the rest match no segment of this plan).
    """
    events, clips, stale = merge_segments(drafts, reviews)
    per_item = item_reviews(events, clips, [v.video_id for v in drafts.videos], stale, reviews)
    old_reviews = {item_id: r for item_id, (level, video_id, start, end) in stale.items()
                   if (r := review_of(reviews, level, video_id, item_id, start, end)) is not None}
    used = {r.annotation_id for r in [*per_item.values(), *old_reviews.values()]}
    used |= {e.corrected_by for e in events if e.corrected_by is not None}

    captions = _merge_rows(drafts.captions, per_item, ("clip",), stale, old_reviews, merge_caption)
    summaries = _merge_rows(drafts.summaries, per_item, ("event", "video"), stale, old_reviews, merge_summary)
    pairs: dict[str, list[QAPair]] = {}
    for pair in drafts.qa:
        pairs.setdefault(pair.item_id, []).append(pair)
    out_qa = []
    extra = [i for i, r in per_item.items() if r.level in ("event", "video") and i not in pairs]
    for item_id in list(pairs) + extra:
        own = pairs.get(item_id, [])
        if item_id in stale:
            out_qa += [stale_row(p, old_reviews.get(item_id)) for p in own]
            continue
        review = per_item.get(item_id)
        out_qa += merge_qa(item_id, own, review, review.level if review else own[0].level,
                           review.video_id if review else own[0].video_id)
    return replace(drafts, events=events, clips=clips, captions=captions, summaries=summaries, qa=out_qa), used


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
    reviews: int = 0  # stored Label Studio annotations, every annotator's
    reviews_unmatched: int = 0  # "N reviews no longer match a segment": kept, listed, never moved to other times
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


def merge_workspace(ws: Workspace, rule: Optional[ReviewRule] = None) -> MergeResult:
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
            out.add("motion_phrases", item.motion_phrases)
            provenance.update(f"{table}:{row.provenance}" for table in ("captions", "summaries", "qa")
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
