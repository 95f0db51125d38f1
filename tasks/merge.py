"""Merge pulled reviews into the drafted tables: human text wins, and every row says how it got there.

`merge` is pure (tables in, tables out); `merge_workspace` adds the I/O: it reads `state/drafts/` and the
stored reviews, re-cuts events whose boundaries a reviewer moved, and rewrites only the tables that changed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Optional

from pydantic import BaseModel, Field

from hivau.schemas.records import HUMAN, Caption, Clip, Event, Provenance, QAPair, ReviewRecord, Summary
from hivau.tasks.review import MERGED_TABLES, Tables, stored_reviews
from hivau.workspace import Workspace

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
        from hivau.tasks.rollup import QA_TYPES

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


class MergeResult(BaseModel):
    tables_rewritten: list[str] = Field(default_factory=list)
    recut: list[str] = Field(default_factory=list)
    provenance: dict[str, int] = Field(default_factory=dict)


def recut_corrected(ws: Workspace, tables: Tables) -> list[str]:
    """Cut the media of every event and clip whose reviewed boundaries moved (resumed when already cut)."""
    from hivau.tasks.cut import CutSettings
    from hivau.tasks.stages import cut_or_resume

    videos = {v.video_id: v for v in tables.videos}
    done = []
    for row, seg_id, dst in [(e, e.event_id, ws.event_media(e.event_id)) for e in tables.events] + \
                            [(c, c.clip_id, ws.clip_media(c.clip_id)) for c in tables.clips]:
        if row.provenance != "boundaries_corrected" or row.cut_start_s is not None or row.video_id not in videos:
            continue
        v = videos[row.video_id]
        result, fresh = cut_or_resume(ws, seg_id, dst, v.path, row.start_s, row.end_s, row.cut_mode or "accurate",
                                      v.fps, v.keyframe_times, CutSettings())
        row.cut_start_s, row.cut_end_s, row.n_frames = result.start_s, result.end_s, result.n_frames
        row.media_path = ws.relative(dst)
        if fresh:
            done.append(seg_id)
    return done


def merge_workspace(ws: Workspace, reviews: Optional[dict[str, ReviewRecord]] = None) -> MergeResult:
    """Rebuild manifests/{events,clips,captions,summaries,qa,reviews} from drafts + reviews; write what changed.

    `reviews` defaults to every review stored in the workspace (a caller that has them passes them in).
    """
    result = MergeResult()
    if not ws.drafts.is_dir():
        return result
    reviews = stored_reviews(ws) if reviews is None else reviews
    merged = merge(Tables.read(ws, drafts=True), reviews)
    result.recut = recut_corrected(ws, merged)
    for table in MERGED_TABLES:
        rows = getattr(merged, table)
        if rows != ws.read_records(table):
            ws.write_table(table, rows)
            result.tables_rewritten.append(table)
    review_rows = sorted(reviews.values(), key=lambda r: (r.level, r.item_id))
    if review_rows != ws.read_records("reviews"):
        ws.write_table("reviews", review_rows)
        result.tables_rewritten.append("reviews")
    result.provenance = dict(Counter(f"{table}:{row.provenance}" for table in ("captions", "summaries", "qa")
                                     for row in getattr(merged, table)))
    return result
