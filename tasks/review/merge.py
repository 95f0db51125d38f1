"""Merge rules: which annotation counts (ReviewRule), and reviews merged into the drafts, human text winning and
every row saying how it got there. Pure (tables in, tables out) but for the rule's file in the workspace."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Literal, Optional

from pydantic import BaseModel, Field

from hivau.review_ui_config import CHAIN_CONTROL
from hivau.schemas.item import Tables
from hivau.schemas.records import (
    HUMAN,
    Caption,
    Clip,
    Event,
    Level,
    Provenance,
    QAPair,
    ReasoningChain,
    ReviewRecord,
    Summary,
    segment_key,
)
from hivau.tasks.text.contracts import QA_TYPES
from hivau.workspace import Workspace, atomic_write_json

MERGED_TABLES = ("events", "clips", "captions", "summaries", "qa", "chains")

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




def load_rule(ws: Workspace) -> ReviewRule:
    path = ws.review_rule
    return ReviewRule.model_validate_json(path.read_bytes()) if path.is_file() else ReviewRule()


def save_rule(ws: Workspace, rule: ReviewRule) -> None:
    atomic_write_json(ws.review_rule, rule.model_dump(mode="json"))


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


def merge_chain(item_id: str, draft: Optional[ReasoningChain], review: Optional[ReviewRecord]
                ) -> Optional[ReasoningChain]:
    """A reasoning chain as its reviewer left it: their text wins; a chain they wrote where none was drafted is
    theirs (edited); left empty, the draft stands with the annotation's verdict."""
    if review is None:
        return draft
    text = review.text(CHAIN_CONTROL)
    if draft is None:
        if not text or review.verdict == "reject":
            return None
        return ReasoningChain(item_id=item_id, level=review.level, video_id=review.video_id, text=text,
                              provenance="edited", generator=HUMAN, annotation_id=review.annotation_id)
    new = text or draft.text
    return draft.model_copy(update={"text": new, "provenance": judged(review, _norm(new) != _norm(draft.text)),
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
    """Captions, summaries or chains: each draft with its item's review, plus rows reviewers wrote where none was
    drafted."""
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
    chains = _merge_rows(drafts.chains, per_item, ("event", "video"), stale, old_reviews, merge_chain)
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
    return replace(drafts, events=events, clips=clips, captions=captions, summaries=summaries, qa=out_qa,
                   chains=chains), used
