"""The verify stage: every text of a video's record checked against the record's own evidence; flags stored with it.

Machine drafts get the checks' severities; texts a person wrote (the annotation file's) are never flagged as
errors, only warned about. Flags of the judges (`llm_judge`, `vlm_judge`) are kept while their text is unchanged.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Optional

from hivau.schemas.chains import PARTS, parse_chain
from hivau.schemas.item import VideoItem
from hivau.schemas.records import Caption, CheckRecord, Generator, Level, QAPair, ReasoningChain, Summary
from hivau.tasks.text.checks import (
    CHECK_NAMES,
    SUMMARY_FIELDS,
    EventEvidence,
    Evidence,
    Flag,
    ItemTexts,
    Text,
    run_checks,
)
from hivau.tasks.text.nlp import parse_many

LEVELS: tuple[Level, ...] = ("clip", "event", "video")
HUMAN_PROVENANCE = ("human", "accepted", "edited")


def summary_texts(s: Summary) -> list[Text]:
    return [Text(name, getattr(s, "text" if name == "summary" else name) or "") for name in SUMMARY_FIELDS
            if name in ("summary", "judgement", "description") or getattr(s, name)]


def chain_texts(chain: ReasoningChain) -> list[Text]:
    """A chain's three parts, each checked as its own text (`chain:perception`, ...)."""
    parsed = parse_chain(chain.text)
    return [Text(f"chain:{part}", parsed.part(part)) for part in PARTS]


def item_texts(item_id: str, level: str, caption: Optional[Caption], summary: Optional[Summary],
               pairs: list[QAPair], chain: Optional[ReasoningChain] = None) -> ItemTexts:
    texts = [Text("caption", caption.text)] if caption else []
    texts += summary_texts(summary) if summary else []
    texts += [Text(f"qa:{p.qa_type}", p.answer, p.question) for p in pairs]
    texts += chain_texts(chain) if chain else []
    return ItemTexts(item_id, level, texts, has_summary=summary is not None, qa_types=[p.qa_type for p in pairs],
                     chain=chain.text if chain else None)


def _captions_by_clip(item: VideoItem) -> dict[str, str]:
    return {c.item_id: c.text for c in item.captions if c.level == "clip" and c.text.strip()}


def evidence_of(item: VideoItem) -> dict[str, Evidence]:
    """item id -> its evidence, for the video, each event and each clip of one record."""
    caption_of = _captions_by_clip(item)
    clips_of: dict[str, list] = {}
    for clip in sorted(item.planned_clips, key=lambda c: (c.event_id, c.start_s)):
        clips_of.setdefault(clip.event_id, []).append(clip)
    out: dict[str, Evidence] = {}
    events = []
    for event in sorted(item.planned_events, key=lambda e: e.start_s):
        texts = [caption_of[c.clip_id] for c in clips_of.get(event.event_id, []) if c.clip_id in caption_of]
        out[event.event_id] = Evidence("event", event.labels, event.is_anomaly, event.start_s, event.end_s, texts)
        if event.is_anomaly:
            events.append(EventEvidence(event.event_id, event.start_s, event.end_s, event.labels, texts))
        previous = None
        for clip in clips_of.get(event.event_id, []):
            out[clip.clip_id] = Evidence("clip", clip.labels, clip.is_anomaly, clip.start_s, clip.end_s,
                                         neighbours=[previous] if previous else [])
            previous = caption_of.get(clip.clip_id)
    duration = item.probe.duration_s if item.probe else max((e.end_s for e in item.planned_events), default=0.0)
    all_captions = [t for e in sorted(item.planned_events, key=lambda e: e.start_s)
                    for c in clips_of.get(e.event_id, []) if (t := caption_of.get(c.clip_id))]
    rolled_up = [t for s in item.summaries if s.level == "event"
                 for t in (s.text, s.description) if t and t.strip()]
    out[item.video_id] = Evidence("video", item.labels, item.is_anomaly, 0.0, duration, all_captions, rolled_up,
                                  events=events)
    return out


def _record(flag: Flag, item_id: str, level: Level, video_id: str, provenance: str, generator: Generator,
            attempts: int) -> CheckRecord:
    severity = "warn" if provenance in HUMAN_PROVENANCE else flag.severity  # a person's words are never errors
    return CheckRecord(item_id=item_id, level=level, video_id=video_id, target=flag.target, check=flag.check,
                       severity=severity, score=flag.score, evidence=flag.evidence[:500],
                       text_provenance=provenance, generator=generator, attempts=attempts)


def family_of(target: str) -> str:
    """The record kind a check target belongs to: caption, summary, qa or chain (a repair's `target`)."""
    head = target.split(":")[0]
    return head if head in ("caption", "qa", "chain") else "summary"


def _owner(flag: Flag, caption: Optional[Caption], summary: Optional[Summary], pairs: list[QAPair],
           chain: Optional[ReasoningChain]):
    """The record a flag's text belongs to (its provenance and generator go on the flag)."""
    if flag.target == "caption":
        return caption
    if flag.target.startswith("chain"):
        return chain
    if flag.target.startswith("qa"):
        qa_type = flag.target.partition(":")[2]
        return next((p for p in pairs if p.qa_type == qa_type), pairs[0] if pairs else None)
    return summary


def check_item(item: VideoItem, levels: Iterable[Level] = LEVELS, attempts: Optional[dict[str, int]] = None
               ) -> list[CheckRecord]:
    """The failed checks of one record's texts at the given levels."""
    levels = set(levels)
    evidence = evidence_of(item)
    attempts = attempts or {}
    captions = {c.item_id: c for c in item.captions if c.level == "clip"}
    summaries = {s.item_id: s for s in item.summaries}
    pairs: dict[str, list[QAPair]] = {}
    for p in item.qa:
        pairs.setdefault(p.item_id, []).append(p)
    chains = {c.item_id: c for c in item.chains}
    # every text the checks will parse, parsed in one batch
    parse_many([c.text for c in item.captions] + [t for s in item.summaries for t in (s.text, s.judgement,
                s.description, s.analysis) if t] + [t for p in item.qa for t in (p.question, p.answer)]
               + [t.text for c in item.chains for t in chain_texts(c)])
    units = [("clip", c.clip_id) for c in item.planned_clips] + [("event", e.event_id) for e in item.planned_events]
    units.append(("video", item.video_id))
    out = []
    for level, item_id in units:
        if level not in levels or item_id not in evidence:
            continue
        caption, summary, qa, chain = captions.get(item_id), summaries.get(item_id), pairs.get(item_id, []), \
            chains.get(item_id)
        if caption is None and summary is None and not qa and chain is None:
            continue
        for flag in run_checks(item_texts(item_id, level, caption, summary, qa, chain), evidence[item_id]):
            owner = _owner(flag, caption, summary, qa, chain)
            if owner is None:
                continue
            out.append(_record(flag, item_id, level, item.video_id, owner.provenance, owner.generator,
                               attempts.get(f"{item_id}|{family_of(flag.target)}", 0)))
    return out


def verify_item(item: VideoItem, levels: Iterable[Level] = LEVELS) -> VideoItem:
    """Check the record's texts at `levels`: their earlier rule flags are replaced, other levels' flags and the
    judges' flags stay."""
    item = item.model_copy(deep=True)
    if item.status == "quarantined":
        return item
    levels = tuple(levels)
    attempts = {f"{r.item_id}|{r.target}": r.attempts for r in item.repairs}
    kept = [c for c in item.checks if c.level not in levels or c.check not in CHECK_NAMES]
    item.checks = kept + check_item(item, levels, attempts)
    return item


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]
