"""Verifiable tasks drawn from the store with a seed: multiple choice, temporal grounding, classification and
anomaly yes/no, each with the one answer a program checks (the rewards of VAU-R1 / Vad-R1 style RL)."""

from __future__ import annotations

import random
from bisect import bisect_left
from dataclasses import dataclass
from typing import Iterable, Optional

from hivau.schemas.classes import CLASS_NAMES, NORMAL, class_key
from hivau.schemas.item import Tables
from hivau.schemas.records import CHOICE_LETTERS, NO_SPAN, InstructionRow, Provenance, Split, VauTaskRow
from hivau.tasks.text.checks import times_in
from hivau.tasks.text.vocabulary import CLASS_GROUPS

QUESTIONS = {
    "detect": "Is there an anomaly in this {what}? Answer yes or no.",
    "classify": "What type of anomaly happens in this {what}? Answer with one class name ({classes}), or Normal if "
                "nothing abnormal happens.",
    "choice_class": "Which type of event does this {what} show?",
    "choice_description": "Which description matches this {what}?",
    "grounding_video": "When does the anomaly happen in this video? Give its start and end in seconds as "
                       "[start, end], or [-1, -1] if nothing abnormal happens.",
    "grounding_event": "When does this happen in the video: \"{description}\"? Give its start and end in seconds "
                       "as [start, end].",
}
WHAT = {"clip": "clip", "event": "video segment", "video": "video"}


@dataclass(frozen=True)
class Item:
    """One clip, event or video of the release, with the facts its tasks are made from."""

    item_id: str
    level: str
    video_id: str
    start_s: float
    end_s: float
    labels: tuple[str, ...]
    is_anomaly: bool
    description: Optional[str] = None  # its released description text, if any
    description_provenance: Optional[Provenance] = None


def span_text(start: float, end: float) -> str:
    """The grounding answer as VAU-R1 writes it: "[12.5, 20.0]", and "[-1, -1]" for no anomaly."""
    return "[-1, -1]" if (start, end) == NO_SPAN else f"[{start:.1f}, {end:.1f}]"


def class_of(item: Item) -> str:
    return item.labels[0] if item.is_anomaly and item.labels else NORMAL


def _family(key: str) -> set[str]:
    """The class and those a text may confuse it with (a robbery is a theft): never each other's distractors."""
    return {key}.union(*(g for g in CLASS_GROUPS if key in g))


def class_distractors(truth: str, rng: random.Random) -> list[str]:
    """Three classes clearly not `truth` (outside its family), Normal among the candidates for an anomaly."""
    if truth == NORMAL:
        pool = sorted(CLASS_NAMES.values())
    else:
        near = _family(class_key(truth))
        pool = sorted(name for key, name in CLASS_NAMES.items() if key not in near) + [NORMAL]
    return rng.sample(pool, 3)


def family_of(item: Item) -> frozenset[str]:
    """The class keys an item's distractors must stay out of: its class's family, or Normal."""
    truth = class_of(item)
    return frozenset({NORMAL}) if truth == NORMAL else frozenset(_family(class_key(truth)))


class DescriptionPools:
    """Per level and class family, the sorted descriptions of the items outside that family; each pool is made
    once (a release asks for one per event and video: scanning every item each time grows with the square)."""

    def __init__(self, items: Iterable[Item]):
        self.by_class: dict[str, dict[str, set[str]]] = {}
        for it in items:
            if it.description:
                key = NORMAL if class_of(it) == NORMAL else class_key(class_of(it))
                self.by_class.setdefault(it.level, {}).setdefault(key, set()).add(it.description)
        self.pools: dict[tuple[str, frozenset[str]], list[str]] = {}

    def pool(self, level: str, near: frozenset[str]) -> list[str]:
        if (level, near) not in self.pools:
            classes = self.by_class.get(level, {})
            self.pools[(level, near)] = sorted(set().union(*(d for k, d in classes.items() if k not in near)))
        return self.pools[(level, near)]


def description_distractors(item: Item, pools: DescriptionPools, rng: random.Random) -> Optional[list[str]]:
    """Three descriptions of other items of the level whose class is outside this one's family; None when the
    dataset has too few. The pool is not copied: its own description (if there) is skipped by index."""
    pool = pools.pool(item.level, family_of(item))
    own = bisect_left(pool, item.description) if item.description else len(pool)
    skip = own if own < len(pool) and pool[own] == item.description else len(pool)
    size = len(pool) - (skip < len(pool))
    if size < 3:
        return None
    return [pool[i + (i >= skip)] for i in rng.sample(range(size), 3)]


def choice_row(item: Item, kind: str, truth: str, distractors: list[str], position: int) -> dict:
    """The fields of a multiple-choice task: options in order with the truth at `position`."""
    options = list(distractors)
    options.insert(position, truth)
    letters = "\n".join(f"{letter}. {text}" for letter, text in zip(CHOICE_LETTERS, options))
    question = QUESTIONS[f"choice_{kind}"].format(what=WHAT[item.level]) + "\n" + letters
    return {"task": "choice", "id": f"{item.item_id}:choice:{kind}", "question": question, "options": options,
            "solution": CHOICE_LETTERS[position], "answer_text": truth}


def items_of(tables: Tables, rows: list[InstructionRow]) -> list[Item]:
    """Every clip, event and video the release has rows for, with its released description."""
    released = {r.item_id for r in rows}
    descriptions = {r.item_id: r for r in rows if r.task == "description"}
    out = []
    for level, records, id_of, span in (
            ("clip", tables.clips, lambda r: r.clip_id, lambda r: (r.start_s, r.end_s)),
            ("event", tables.events, lambda r: r.event_id, lambda r: (r.start_s, r.end_s)),
            ("video", tables.videos, lambda r: r.video_id, lambda r: (0.0, r.duration_s))):
        for r in records:
            item_id = id_of(r)
            if item_id not in released:
                continue
            d = descriptions.get(item_id)
            out.append(Item(item_id, level, r.video_id, *span(r), tuple(r.labels), r.is_anomaly,
                            d.answer if d else None, d.provenance if d else None))
    return out


def anomaly_span(events: Iterable[Item]) -> Optional[tuple[float, float]]:
    """A video's anomalous time: from its first anomalous event's start to its last one's end."""
    spans = [(e.start_s, e.end_s) for e in events if e.is_anomaly]
    return (min(s for s, _ in spans), max(e for _, e in spans)) if spans else None


def vau_tasks(tables: Tables, rows: list[InstructionRow], splits: dict[str, Split], media_of: dict[str, str],
              durations: dict[str, float], seed: int = 0) -> list[VauTaskRow]:
    """The verifiable tasks of a release, drawn from its rows' items with `seed`: the same store, rows and seed
    give the same tasks. Labels and times are the annotation's (or a reviewer's correction); a description
    option is a released text, so it passed the same review rules as the row that carries it."""
    items = items_of(tables, rows)
    events_of: dict[str, list[Item]] = {}
    for it in items:
        if it.level == "event":
            events_of.setdefault(it.video_id, []).append(it)
    pools = DescriptionPools(items)
    classes = ", ".join(sorted(CLASS_NAMES.values()))
    out: list[VauTaskRow] = []

    def add(it: Item, fields: dict, media: str, duration: float, provenance: Provenance = "human") -> None:
        out.append(VauTaskRow(item_id=it.item_id, split=splits[it.video_id], level=it.level, media_path=media,
                              source_video=it.video_id, start_s=it.start_s, end_s=it.end_s, duration_s=duration,
                              labels=list(it.labels), is_anomaly=it.is_anomaly, provenance=provenance, seed=seed,
                              **fields))

    choices: list[tuple[Item, str, str, list[str], Provenance]] = []
    for it in items:
        what, own_media, own_duration = WHAT[it.level], media_of[it.item_id], it.end_s - it.start_s
        rng = random.Random(f"{seed}:{it.item_id}")
        yes = "yes" if it.is_anomaly else "no"
        add(it, {"task": "detect", "id": f"{it.item_id}:detect", "question": QUESTIONS["detect"].format(what=what),
                 "solution": yes, "answer_text": yes}, own_media, own_duration)
        if it.level == "clip":
            continue
        truth = class_of(it)
        add(it, {"task": "classify", "id": f"{it.item_id}:classify", "solution": truth, "answer_text": truth,
                 "question": QUESTIONS["classify"].format(what=what, classes=classes)}, own_media, own_duration)
        choices.append((it, "class", truth, class_distractors(truth, rng), "human"))
        if it.description and (wrong := description_distractors(it, pools, rng)):
            choices.append((it, "description", it.description, wrong, it.description_provenance or "human"))
        video_media = media_of.get(it.video_id)
        if video_media is None:
            continue
        if it.level == "video":
            span = anomaly_span(events_of.get(it.video_id, [])) if it.is_anomaly else NO_SPAN
            if span is not None:
                add(it, {"task": "grounding", "id": f"{it.item_id}:grounding", "solution": span_text(*span),
                         "answer_text": span_text(*span), "question": QUESTIONS["grounding_video"]},
                    video_media, durations[it.video_id])
        elif it.is_anomaly and it.description and not times_in(it.description):  # no answer in the question
            question = QUESTIONS["grounding_event"].format(description=it.description)
            add(it, {"task": "grounding", "id": f"{it.item_id}:grounding", "question": question,
                     "solution": span_text(it.start_s, it.end_s), "answer_text": span_text(it.start_s, it.end_s)},
                video_media, durations[it.video_id], it.description_provenance or "human")
    # the right answer's letter: cycled over the tasks in a seeded order, so each letter is right a quarter of
    # the time (a model cannot learn "always A")
    order = random.Random(seed).sample(range(len(choices)), len(choices))
    for position, index in enumerate(order):
        it, kind, truth, wrong, provenance = choices[index]
        add(it, choice_row(it, kind, truth, wrong, position % len(CHOICE_LETTERS)), media_of[it.item_id],
            it.end_s - it.start_s, provenance)
    return out
