"""Draft checks: recall on seeded defects, false flags on HIVAU-70k's human texts, and the verify stage's cost.

    .venv/bin/python benchmarks/bench_verify.py [--videos 1000 4000] [--seed 0] [--out FILE]

Recall: clean texts from two sources, the demo's drafts (rendered and built here with the offline extractive
roll-up) and the human texts of the real HIVAU-70k test file (checked as if they were drafts). For each defect
kind of `checks.DEFECT_KINDS`, a seeded share of the eligible items (10%; at least `--min-per-kind`, drawn again
with a new wording when a source has fewer) gets one defect, worded from several templates and word lists, and
`run_checks` runs on the changed item. It counts as caught when a flag of that kind's checks appears that the
clean item did not have (a flag the clean text already carried says nothing about the defect); items whose
defect is already there (a caption already the same as its neighbour's, a summary already missing an event)
are not eligible. False flags: every untouched HIVAU-70k text, the whole file and its two halves by video
(even / odd index). Cost: `verify.check_item` over N synthetic store records (the demo's records with new ids
and colours / objects swapped, so that every text is parsed afresh), in fresh processes that only run the
verify stage (`--workers` of them, N / workers records each), and the verify stages' share of the demo build.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[1]
HIVAU_FILE = REPO.parent / "shared" / "fixtures" / "annotations" / "hivau_ucf_database_test.json"
GOALS = {"grounding": 0.8}  # recall goal per kind; the others 0.9
DEFAULT_GOAL = 0.9
FALSE_GOALS = {"error": 0.02, "any": 0.10}

# ================================================================ the items: texts and evidence, per unit


@dataclass
class Unit:
    """One clip, event or video: its texts as `run_checks` reads them, and the evidence they are checked against."""

    item_id: str
    level: str
    texts: object  # ItemTexts
    evidence: object  # Evidence


@dataclass
class Video:
    video_id: str
    units: list[Unit] = field(default_factory=list)

    def of_level(self, level: str) -> list[Unit]:
        return [u for u in self.units if u.level == level]


def _summary_fields(summary: str, split: dict) -> list:
    """A HIVAU summary and its split, as the store reads them (an empty analysis is absent)."""
    from hivau.tasks.text.checks import Text

    return [Text("summary", summary)] + [Text(k, split.get(k) or "") for k in ("judgement", "description", "analysis")
                                         if k in split and (split.get(k) or k != "analysis")]


def hivau_videos(path: Path) -> list[Video]:
    """The real file's videos: each event's clip captions are its evidence; the video's are all of them, with the
    events' summaries and descriptions (what a video summary is rolled up from) and its anomalous events."""
    from hivau.tasks.text.checks import EventEvidence, Evidence, ItemTexts, Text

    out = []
    for video_id, v in json.loads(path.read_text()).items():
        labels = v["label"] or []
        anomalous = bool(labels)
        splits = v.get("events_summary_split") or [{}] * len(v["events"])
        video = Video(video_id)
        all_captions, rolled_up, events = [], [], []
        for i, ((start, end), clips, captions) in enumerate(zip(v["events"], v["clips"], v["clips_caption"])):
            event_id, split = f"{video_id}_E{i}", splits[i] or {}
            all_captions += captions
            rolled_up += [t for t in (v["events_summary"][i], split.get("description")) if t and t.strip()]
            if anomalous:
                events.append(EventEvidence(event_id, start, end, labels, list(captions)))
            video.units.append(Unit(event_id, "event",
                                    ItemTexts(event_id, "event", _summary_fields(v["events_summary"][i], split), True),
                                    Evidence("event", labels, anomalous, start, end, list(captions))))
            previous = None
            for j, ((clip_start, clip_end), caption) in enumerate(zip(clips, captions)):
                clip_id = f"{event_id}C{j}"
                video.units.append(Unit(clip_id, "clip", ItemTexts(clip_id, "clip", [Text("caption", caption)]),
                                        Evidence("clip", labels, anomalous, clip_start, clip_end,
                                                 neighbours=[previous] if previous else [])))
                previous = caption
        texts = ItemTexts(video_id, "video", _summary_fields(v["video_summary"], v.get("video_summary_split") or {}),
                          True)
        video.units.append(Unit(video_id, "video", texts, Evidence("video", labels, anomalous, 0.0,
                                                                   v["n_frames"] / v["fps"], all_captions, rolled_up,
                                                                   events=events)))
        out.append(video)
    return out


def store_videos(items) -> list[Video]:
    """Stored records as the verify stage reads them (`verify.evidence_of`, `verify.item_texts`), without its rule
    that a person's words are only warned about: every text is checked as a draft."""
    from hivau.tasks.text.verify import evidence_of, item_texts

    out = []
    for item in items:
        evidence = evidence_of(item)
        captions = {c.item_id: c for c in item.captions if c.level == "clip"}
        summaries = {s.item_id: s for s in item.summaries}
        pairs: dict[str, list] = {}
        for p in item.qa:
            pairs.setdefault(p.item_id, []).append(p)
        video = Video(item.video_id)
        ids = [("clip", c.clip_id) for c in item.planned_clips] + [("event", e.event_id) for e in item.planned_events]
        for level, item_id in ids + [("video", item.video_id)]:
            caption, summary, qa = captions.get(item_id), summaries.get(item_id), pairs.get(item_id, [])
            if item_id in evidence and (caption or summary or qa):
                video.units.append(Unit(item_id, level, item_texts(item_id, level, caption, summary, qa),
                                        evidence[item_id]))
        if video.units:
            out.append(video)
    return out


# ================================================================ word lists the defects are drawn from

# concrete things seen in surveillance and dash-cam footage; `second X` is a count the captions do not give
THINGS = ["a knife", "a crowbar", "a ladder", "a second man", "a motorcycle", "a fire", "a dog", "an umbrella",
          "a suitcase", "a bicycle", "a police officer", "a child", "a truck", "a baseball bat", "a shopping cart",
          "a fire extinguisher", "a helmet", "a shotgun", "a stroller", "a skateboard", "a bus", "an ambulance",
          "a horse", "a wheelchair", "a traffic cone", "a trash bin", "a mattress", "a backpack", "a jerrycan",
          "a hammer", "a security guard", "a delivery van", "a flashlight", "a tow truck", "a cardboard box",
          "a brick", "a cat", "a machete", "a forklift", "a wooden crate", "a spare tire", "a toddler", "a ski mask",
          "a second car", "a woman in a red coat", "a garden hose", "a chainsaw", "a pizza box"]
# words of a thing's phrase that do not name it
NOT_THE_THING = {"a", "an", "second", "in", "red", "wooden", "spare"}
# the forms a word's mention takes in captions (plurals, and this field's paraphrases: a cop is a police officer)
IRREGULAR = {"man": {"men"}, "woman": {"women"}, "child": {"children"}, "knife": {"knives"}, "person": {"people"},
             "machete": {"machetes"}, "box": {"boxes"}, "bus": {"buses"}}
COUNTS = {"men", "women", "cars", "two", "second", "both", "another", "other", "three", "several", "group", "crowd",
          "people", "many", "multiple", "others"}
ONE_THING = ["{A} is lying on the ground nearby.", "{A} can be seen in the background.", "{A} is also visible.",
             "At one point, {a} appears.", "Meanwhile, {a} comes into view.", "There is {a} close by.",
             "The footage also shows {a}.", "Later, {a} is seen briefly.", "{A} stays in view for a while."]
TWO_THINGS = ["{A} and {b} are also visible.", "{A} is next to {b}.", "Meanwhile, {a} appears beside {b}.",
              "The footage also shows {a} and {b}.", "There is {a} near {b}.", "Later, {a} passes {b}.",
              "In the background, {a} stands by {b}."]

# label: normal words for an anomalous item (some are phrasings the checks' patterns may not know)
NORMAL_CLAIMS = ["No anomaly exists in this {level}.", "Nothing unusual happens in this {level}.",
                 "Everything appears normal.", "The scene looks completely ordinary.", "There is no abnormal activity.",
                 "This {level} shows routine, everyday activity and appears normal.",
                 "No suspicious behavior is observed; the {level} is normal.", "No anomalies are present.",
                 "It is an ordinary scene with nothing out of place.", "Nothing out of the ordinary occurs.",
                 "The {level} is uneventful.", "All activity in the {level} is normal."]
CLASS_PHRASES = {"fighting": ["a fight", "fighting", "a brawl"], "arson": ["arson"],
                 "explosion": ["an explosion", "a blast"],
                 "roadaccidents": ["a road accident", "a car accident", "a traffic accident"],
                 "shooting": ["a shooting", "gunfire"], "robbery": ["a robbery"], "shoplifting": ["shoplifting"],
                 "stealing": ["a theft", "stealing"], "burglary": ["a burglary", "a break-in"],
                 "vandalism": ["vandalism"], "assault": ["an assault"], "abuse": ["child abuse", "animal abuse"],
                 "arrest": ["an arrest"], "riot": ["a riot"]}
WRONG_CLASS = ["An anomaly exists, specifically named {Class}.", "The anomaly is {cls}.", "This is a case of {cls}.",
               "The {level} shows {cls}.", "{Cls} takes place.", "An anomaly exists: {cls} occurs."]
ANOMALY_CLAIMS = ["An anomaly exists: {cls} occurs.", "This {level} contains an anomaly.",
                  "{Cls} takes place in this {level}.", "Abnormal activity is observed: {cls}.",
                  "The {level} shows {cls}.", "Something unusual happens: {cls}.", "This {level} is anomalous.",
                  "An anomalous incident occurs in this {level}.", "Suspicious activity takes place.",
                  "Something unusual happens here."]

# times outside the span, in the forms drafts write them ({t}: a point; {a}-{b}: a range)
TIME_FORMS = ["at {clock}", "at {t:.1f} s", "at {t:.0f}s", "at {t:.0f} seconds", "at around {t:.0f} seconds",
              "at {t:.1f} sec", "from {a:.1f} s to {b:.0f} s", "between {a:.1f}s and {b:.0f}s", "({a:.1f}-{b:.1f} s)",
              "from {a:.0f} to {b:.0f} seconds", "until {clock}", "starting at {t:.1f} seconds"]
TIME_SENTENCES = ["{T}, the situation changes.", "This happens {t}.", "The incident continues {t}.",
                  "Someone moves {t}.", "{T}, the scene is quiet again.", "Everything stops {t}."]

# degenerate: looping, one word, far too short
LOOP_SEPARATORS = [". ", ", ", " ", "; ", " and "]
DOMINANT_WORDS = ["the", "car", "very", "and", "man", "fire", "again", "no", "then", "police", "suddenly"]
TOO_SHORT = ["Car.", "A man.", "Nothing.", "Person walking.", "Smoke.", "Unknown.", "People.", "Street scene.",
             "A fight.", "Shop."]
SWAP_WORDS = ["quickly", "slowly", "red", "blue", "then", "also", "small", "large", "left", "right", "again"]

# omission: a generic scene; each sentence with the words that would mention the event's things
PERSON_WORDS = {"man", "men", "woman", "women", "person", "people", "boy", "girl", "child", "children", "kid",
                "officer", "police", "policeman", "customer", "clerk", "driver", "pedestrian", "pedestrians", "guard",
                "cashier", "worker", "someone", "customers", "shopper", "individual", "suspect", "crowd", "group"}
VEHICLE_WORDS = {"car", "cars", "vehicle", "vehicles", "truck", "van", "bus", "motorcycle", "bike", "bicycle", "taxi",
                 "suv", "traffic", "scooter"}
PLACES = ["a parking lot", "a shop interior", "a street corner", "a gas station forecourt", "an office lobby",
          "a residential street", "a warehouse aisle", "a hallway", "a highway", "a convenience store",
          "a train platform", "a hotel reception", "a school yard", "a bank lobby", "a park path", "an intersection",
          "a garage"]
OPENERS = ["The footage shows {place}.", "The camera looks over {place}.", "The video is filmed at {place}.",
           "This is a view of {place}.", "A fixed camera watches {place}."]
FILLERS = [("People come and go.", PERSON_WORDS), ("A few vehicles pass by.", VEHICLE_WORDS),
           ("The lighting stays the same throughout.", set()), ("The view does not change.", set()),
           ("Customers browse the shelves.", PERSON_WORDS | {"shelf", "shelves"}),
           ("Traffic moves steadily.", VEHICLE_WORDS), ("Pedestrians walk past at a normal pace.", PERSON_WORDS),
           ("The area is mostly empty.", set()), ("Trees sway in the wind.", {"tree", "trees"}),
           ("Lights flicker on the ceiling.", {"light", "lights", "ceiling"}),
           ("The picture is steady for most of the recording.", set())]
FUNCTION_WORDS = {"the", "a", "an", "of", "at", "in", "on", "and", "to", "is", "are", "by", "for", "this", "it",
                  "over", "few", "does", "not", "same", "most", "view", "video", "footage", "camera", "filmed",
                  "shows", "looks", "watches", "fixed", "come", "go", "pass", "past", "mostly", "stays", "change",
                  "throughout", "steadily", "moves", "walk", "normal", "pace", "sway", "flicker", "steady",
                  "recording", "picture", "lighting", "area", "empty", "an", "anomaly", "exists"}


# ================================================================ small text helpers


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def _insert_sentence(text: str, sentence: str, rng: random.Random) -> str:
    """The sentence put between two of the text's sentences (or at its start or end), drawn at random."""
    parts = _sentences(text)
    parts.insert(rng.randint(0, len(parts)), sentence)
    return " ".join(parts)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _text(texts, target: str) -> Optional[str]:
    t = texts.get(target)
    return t.text if t is not None else None


def _set(texts, target: str, new: str) -> None:
    texts.get(target).text = new


def _forms(word: str) -> set[str]:
    """A word's mentions: itself, its plural, and its paraphrases in the checks' synonym map (a cop is police)."""
    from hivau.tasks.text.vocabulary import SYNONYMS

    head = SYNONYMS.get(word, word)
    family = {w for w, h in SYNONYMS.items() if h == head} | {word, head}
    return family | {w + "s" for w in family} | {w + "es" for w in family} | \
        {p for w in family for p in IRREGULAR.get(w, ())}


def _unmentioned(thing: str, said: set[str], said_list: list[str]) -> bool:
    """A thing none of the span's texts mentions; `a second X` needs X mentioned at most once, and nothing that
    counts two of them."""
    names = [w for w in _words(thing) if w not in NOT_THE_THING]
    if thing.startswith("a second"):
        forms = _forms(names[-1])
        return sum(w in forms for w in said_list) <= 1 and not (said & COUNTS)
    return not any(_forms(w) & said for w in names)


# ================================================================ the defects


@dataclass
class Injected:
    texts: object
    evidence: object
    target: str
    variant: str
    shown: str  # what was written, for the misses
    expect: tuple[str, ...] = ()  # words a flag's evidence must name to count (the things put in)


Injector = Callable[[Video, Unit, random.Random, dict], Optional[Injected]]


def _copy(unit: Unit):
    return copy.deepcopy(unit.texts), unit.evidence


def inject_grounding(video: Video, unit: Unit, rng: random.Random, ctx: dict) -> Optional[Injected]:
    """One or two things no text of the span mentions, in a sentence put into the description or summary."""
    targets = [t for t in ("description", "summary") if (_text(unit.texts, t) or "").strip()]
    if unit.level == "clip" or not unit.evidence.captions or not targets:
        return None
    said_list = [w for text in unit.evidence.captions + unit.evidence.summaries for w in _words(text)]
    free = [t for t in THINGS if _unmentioned(t, set(said_list), said_list)]
    if len(free) < 2:
        return None
    texts, evidence = _copy(unit)
    target = rng.choice(targets)
    things = rng.sample(free, rng.choice((1, 2)))
    template = rng.choice(ONE_THING if len(things) == 1 else TWO_THINGS)
    b = things[1] if len(things) > 1 else ""
    sentence = template.format(A=_cap(things[0]), a=things[0], b=b)
    _set(texts, target, _insert_sentence(_text(texts, target), sentence, rng))
    names = tuple(w for t in things for w in _words(t) if w not in NOT_THE_THING)
    return Injected(texts, evidence, target, f"{len(things)} thing(s)", sentence, names)


def _wrong_class(own_labels: list[str], rng: random.Random) -> str:
    """A class outside the label's family (a robbery is a theft; an explosion is not a fight)."""
    from hivau.tasks.text.vocabulary import CLASS_GROUPS, class_key

    own = {class_key(lb) for lb in own_labels}
    family = {k for group in CLASS_GROUPS if own & group for k in group} | own
    return rng.choice(sorted(k for k in CLASS_PHRASES if k not in family))


def inject_label(video: Video, unit: Unit, rng: random.Random, ctx: dict) -> Optional[Injected]:
    """A judgement that contradicts the label: normal words or another family's class for an anomalous item, an
    anomaly claimed or a class named for a normal one."""
    if unit.level == "clip" or not (_text(unit.texts, "judgement") or "").strip():
        return None
    texts, evidence = _copy(unit)
    level = unit.level
    if evidence.is_anomaly and rng.random() < 0.5:
        new, variant = rng.choice(NORMAL_CLAIMS).format(level=level), "says normal"
    else:
        key = _wrong_class(evidence.labels, rng)
        cls = rng.choice(CLASS_PHRASES[key])
        bare = re.sub(r"^(a|an) ", "", cls)
        pool = WRONG_CLASS if evidence.is_anomaly else ANOMALY_CLAIMS
        new = rng.choice(pool).format(level=level, cls=cls, Cls=_cap(cls), Class=_cap(bare))
        variant = "other class" if evidence.is_anomaly else "claims an anomaly"
    _set(texts, "judgement", new)
    return Injected(texts, evidence, "judgement", variant, new)


def _time_outside(start: float, end: float, rng: random.Random) -> tuple[float, float, str]:
    """A point (and a range around it) clearly outside [start, end]: past the end, or before a late start."""
    margin = max(1.0, 0.05 * (end - start)) + 0.6  # beyond the checks' tolerance, after rounding to a second
    if start > margin + 1.5 and rng.random() < 0.4:
        b = math.floor(rng.uniform(0, start - margin))
        return float(max(0, b - rng.randint(1, 5))), float(b), "before the start"
    a = math.ceil(end + margin + rng.uniform(0, 60))
    return float(a), float(a + rng.randint(1, 10)), "past the end"


def _time_phrase(a: float, b: float, rng: random.Random) -> str:
    form = rng.choice(TIME_FORMS)
    # clocks and points give the range's later end past the span, its earlier one before it
    t = b if "until" in form else a
    if "{t" in form or "{clock}" in form:
        t = a if rng.random() < 0.5 else b
    clock = f"{int(t) // 60:02d}:{int(t) % 60:02d}"
    return form.format(t=t, a=a, b=b, clock=clock)


def inject_times(video: Video, unit: Unit, rng: random.Random, ctx: dict) -> Optional[Injected]:
    """A time outside the item's span, in one of its texts (a caption, a summary field, a 5W2H answer)."""
    targets = [t.target for t in unit.texts.texts if t.text.strip()]
    if not targets:
        return None
    texts, evidence = _copy(unit)
    a, b, where = _time_outside(evidence.start_s, evidence.end_s, rng)
    phrase = _time_phrase(a, b, rng)
    sentence = rng.choice(TIME_SENTENCES).format(T=_cap(phrase), t=phrase)
    target = rng.choice(targets)
    _set(texts, target, _insert_sentence(_text(texts, target), sentence, rng))
    return Injected(texts, evidence, target, where, sentence)


def inject_missing(video: Video, unit: Unit, rng: random.Random, ctx: dict) -> Optional[Injected]:
    """A blank description, judgement or summary, the analysis of an anomalous item dropped, or a 5W2H pair
    dropped (the demo's drafts: HIVAU-70k has no QA)."""
    if unit.level == "clip" or not unit.texts.has_summary:
        return None
    texts, evidence = _copy(unit)
    options = [f"blank {t}" for t in ("description", "judgement", "summary") if (_text(texts, t) or "").strip()]
    if evidence.is_anomaly and texts.get("analysis") is not None:
        options.append("drop analysis")
    if len(texts.qa_types) > 1:
        options.append("drop a 5W2H pair")
    if not options:
        return None
    variant = rng.choice(options)
    if variant.startswith("blank"):
        target = variant.split()[1]
        _set(texts, target, rng.choice(["", " ", "\n"]))
    elif variant == "drop analysis":
        target = "analysis"
        texts.texts = [t for t in texts.texts if t.target != "analysis"]
    else:
        qa_type = rng.choice(texts.qa_types)
        target = f"qa:{qa_type}"
        texts.texts = [t for t in texts.texts if t.target != target]
        texts.qa_types = [t for t in texts.qa_types if t != qa_type]
    return Injected(texts, evidence, target, variant, variant)


def _loop(text: str, rng: random.Random) -> str:
    """The text up to a sentence, then one of its clauses said 3-6 times (a decoder caught in a loop)."""
    clauses = [c.strip() for c in re.split(r"[.;,](?:\s+|$)", text) if 3 <= len(c.split()) <= 12]
    clause = rng.choice(clauses) if clauses else " ".join(text.split()[:6])
    kept = _sentences(text)[:rng.randint(0, max(0, len(_sentences(text))))]
    sep = rng.choice(LOOP_SEPARATORS)
    return (" ".join(kept) + " " + sep.join([clause] * rng.randint(3, 6))).strip() + "."


def _dominant(text: str, rng: random.Random) -> str:
    """One word making up half the text: repeated after its first words, or between every word."""
    word = rng.choice(DOMINANT_WORDS)
    first = text.split()[:rng.randint(3, 12)]
    if rng.random() < 0.5:
        return " ".join(first + [word] * (len(first) + rng.randint(0, 4)))
    return " ".join(w for x in first for w in (word, x)) + f" {word}."


def _too_long(rng: random.Random, corpus: list[str]) -> str:
    """About 900 words of other videos' caption sentences (no loop: only the length is wrong)."""
    goal, out, n = rng.randint(850, 1000), [], 0
    while n < goal:
        sentence = rng.choice(corpus)
        out.append(sentence)
        n += len(sentence.split())
    return " ".join(out)


def inject_degenerate(video: Video, unit: Unit, rng: random.Random, ctx: dict) -> Optional[Injected]:
    """A looping phrase, one word making up half the text, or a text far outside its length range."""
    targets = [t.target for t in unit.texts.texts if len(t.text.split()) >= 4 and t.target != "judgement"]
    if not targets:
        return None
    texts, evidence = _copy(unit)
    target = rng.choice(targets)
    # a one- or two-word 5W2H answer is an answer ("A person."): too short only for the other texts
    variant = rng.choice(["loop", "dominant word", "too long"] + ([] if target.startswith("qa:") else ["too short"]))
    original = _text(texts, target)
    if variant == "loop":
        new = _loop(original, rng)
    elif variant == "dominant word":
        new = _dominant(original, rng)
    elif variant == "too short":
        new = rng.choice(TOO_SHORT)
    else:
        new = _too_long(rng, ctx["corpus"])
    _set(texts, target, new)
    return Injected(texts, evidence, target, variant, new)


def _one_word_changed(text: str, rng: random.Random) -> str:
    words = text.split()
    long = [i for i, w in enumerate(words) if len(w.strip(".,;")) >= 3]
    i = rng.choice(long or [0])
    words[i] = rng.choice([w for w in SWAP_WORDS if w != words[i].lower()])
    return " ".join(words)


def inject_duplicate(video: Video, unit: Unit, rng: random.Random, ctx: dict) -> Optional[Injected]:
    """A caption the same as (or one word off) the previous clip's in its event; two 5W2H answers the same."""
    texts, evidence = _copy(unit)
    near = rng.random() < 0.5
    if unit.level == "clip":
        if not evidence.neighbours or not (_text(texts, "caption") or "").strip() or ctx["flagged"]("caption"):
            return None
        new = _one_word_changed(evidence.neighbours[0], rng) if near else evidence.neighbours[0]
        _set(texts, "caption", new)
        return Injected(texts, evidence, "caption", "one word changed" if near else "same caption", new)
    answers = [t for t in texts.texts if t.target.startswith("qa:")]
    later = [i for i, t in enumerate(answers) if i > 0 and not ctx["flagged"](t.target)]
    if not later:
        return None
    i = rng.choice(later)
    sources = [a for a in answers[:i] if len(a.text.split()) >= 5]
    if not sources:
        return None
    source = rng.choice(sources)
    new = _one_word_changed(source.text, rng) if near else source.text
    answers[i].text = new
    return Injected(texts, evidence, answers[i].target,
                    f"{answers[i].target} repeats {source.target}" + (", one word changed" if near else ""), new)


def _generic_scene(captions: list[str], rng: random.Random) -> Optional[str]:
    """A text about the scene that names none of the event's things (nor its class, nor a time)."""
    seen = {w for c in captions for w in _words(c)}
    seen |= {w[:-1] for w in seen if w.endswith("s")}

    def clean(sentence: str, things: set[str] = frozenset()) -> bool:
        content = {w for w in _words(sentence) if w not in FUNCTION_WORDS}
        return not (content & seen) and not (things & seen)

    openers = [o.format(place=p) for o in OPENERS for p in PLACES if clean(o.format(place=p))]
    fillers = [s for s, things in FILLERS if clean(s, things)]
    if not openers:
        return None
    chosen = [rng.choice(openers)] + rng.sample(fillers, min(len(fillers), rng.randint(1, 3)))
    if rng.random() < 0.4:
        chosen.insert(0, "An anomaly exists in this video.")
    return " ".join(chosen)


def _overlap(a, b) -> float:
    """The share of the shorter event's span that the two events share."""
    shared = min(a.end_s, b.end_s) - max(a.start_s, b.start_s)
    return max(0.0, shared) / max(1e-6, min(a.end_s - a.start_s, b.end_s - b.start_s))


def inject_omission(video: Video, unit: Unit, rng: random.Random, ctx: dict) -> Optional[Injected]:
    """A video summary and description that leave out one anomalous event: only the other events described, or
    (one event) a generic text about the scene."""
    evidence = unit.evidence
    if unit.level != "video" or not evidence.events or ctx["flagged"]("summary"):
        return None
    targets = [t for t in ("summary", "description") if _text(unit.texts, t) is not None]
    if "summary" not in targets:
        return None
    texts, _ = _copy(unit)
    # an event another one repeats (HIVAU-70k has pairs with the same span and captions) is not left out when
    # the other is described: only events apart from the rest are left out with the rest described
    apart = [e for e in evidence.events if not any(_overlap(e, o) > 0.5 for o in evidence.events if o is not e)]
    left_out = rng.choice(apart or evidence.events)
    others = [u for u in video.of_level("event") if u.item_id != left_out.event_id
              and any(e.event_id == u.item_id for e in evidence.events)]
    if apart and others and rng.random() < 0.75:
        variant = "other events only"
        new = {t: " ".join(_text(u.texts, t) or "" for u in others).strip() for t in targets}
    else:
        variant = "generic scene"
        scene = [_generic_scene(left_out.captions, rng) for _ in targets]
        if not all(scene):
            return None
        new = dict(zip(targets, scene))
    for target, text in new.items():
        _set(texts, target, text)
    return Injected(texts, evidence, "summary", f"{variant} (left out {left_out.event_id})", new["summary"])


INJECTORS: dict[str, Injector] = {"grounding": inject_grounding, "label": inject_label, "times": inject_times,
                                  "missing": inject_missing, "degenerate": inject_degenerate,
                                  "duplicate": inject_duplicate, "omission": inject_omission}


# ================================================================ recall


@dataclass
class Outcome:
    kind: str
    source: str
    unit_id: str
    level: str
    target: str
    variant: str
    shown: str
    caught: bool
    caught_error: bool
    flagged_before: bool
    new_flags: list[str]


def _flags(texts, evidence, names: tuple[str, ...]) -> set:
    from hivau.tasks.text.checks import run_checks

    return {f for f in run_checks(texts, evidence) if f.check in names}


# kinds whose eligible items are drawn in strata, each with its share and minimum: videos with more than one
# anomalous event are few (14 of HIVAU's 251) and the only ones where an omitted event has others beside it
STRATA: dict[str, Callable[[Unit], str]] = {
    "omission": lambda unit: "several anomalous events" if len(unit.evidence.events) > 1 else "one"}


def _draws(eligible: list, share: float, minimum: int, rng: random.Random) -> list:
    """`share` of the eligible items, at least `minimum`: a small source's items are drawn again (each draw
    gets its own wording) once every one has been drawn."""
    n = max(math.ceil(share * len(eligible)), minimum)
    if n <= len(eligible):
        return rng.sample(eligible, n)
    out = []
    while len(out) < n:
        out += rng.sample(eligible, min(len(eligible), n - len(out)))
    return out


def seed_defects(source: str, videos: list[Video], kind: str, seed: int, share: float, minimum: int,
                 corpus: list[str]) -> list[Outcome]:
    from hivau.tasks.text.checks import DEFECT_KINDS

    names = DEFECT_KINDS[kind]
    rng = random.Random(f"{seed}-{source}-{kind}")  # one stream per (source, kind): adding a kind moves no other
    before: dict[str, set] = {}
    eligible = []
    for video in videos:
        for unit in video.units:
            flags = before[unit.item_id] = _flags(unit.texts, unit.evidence, names)
            ctx = {"corpus": corpus, "flagged": lambda target, fl=flags: any(f.target == target for f in fl)}
            # eligible when an injection can be made (tried on a throwaway stream)
            if INJECTORS[kind](video, unit, random.Random(0), ctx) is not None:
                eligible.append((video, unit, ctx))
    strata: dict[str, list] = defaultdict(list)
    for video, unit, ctx in eligible:
        strata[STRATA[kind](unit) if kind in STRATA else ""].append((video, unit, ctx))
    outcomes = []
    drawn = [d for key in sorted(strata) for d in _draws(strata[key], share, minimum, rng)]
    for video, unit, ctx in drawn:
        injected = None
        for _ in range(5):  # a draw that cannot be made (no clean scene text) is drawn again
            if (injected := INJECTORS[kind](video, unit, rng, ctx)) is not None:
                break
        if injected is None:
            continue
        new = _flags(injected.texts, injected.evidence, names) - before[unit.item_id]
        if injected.expect:  # a flag about something else is not this defect caught
            new = {f for f in new if set(_words(f.evidence)) & set(injected.expect)}
        outcomes.append(Outcome(kind, source, unit.item_id, unit.level, injected.target, injected.variant,
                                injected.shown, bool(new), any(f.severity == "error" for f in new),
                                bool(before[unit.item_id]),
                                [f"{f.check}/{f.severity}/{f.target}: {f.evidence[:100]}" for f in new]))
    return outcomes


def caption_corpus(videos: list[Video]) -> list[str]:
    return [s for v in videos for u in v.of_level("clip") for t in u.texts.texts for s in _sentences(t.text)
            if len(s.split()) >= 5]


def recall_table(outcomes: list[Outcome]) -> tuple[list[str], list[str]]:
    """The recall table's lines, and the goals missed."""
    from hivau.tasks.text.checks import DEFECT_KINDS

    lines = ["| kind | source | injected | caught (any severity) | recall | recall at error | flagged before | goal |",
             "|---|---|---|---|---|---|---|---|"]
    missed = []
    for kind in DEFECT_KINDS:
        for source in ("demo", "hivau"):
            rows = [o for o in outcomes if o.kind == kind and o.source == source]
            goal = GOALS.get(kind, DEFAULT_GOAL)
            if not rows:
                lines.append(f"| {kind} | {source} | 0 | – | – | – | – | {goal:.2f} |")
                continue
            caught = sum(o.caught for o in rows)
            recall = caught / len(rows)
            error = sum(o.caught_error for o in rows) / len(rows)
            mark = "met" if recall >= goal else "**missed**"
            if recall < goal:
                missed.append(f"{kind}/{source}")
            lines.append(f"| {kind} | {source} | {len(rows)} | {caught} | {recall:.3f} | {error:.3f} | "
                         f"{sum(o.flagged_before for o in rows)} | >= {goal:.2f} {mark} |")
    return lines, missed


def variant_table(outcomes: list[Outcome]) -> list[str]:
    """Recall by the defect's variant: which wordings the checks miss."""
    lines = ["| kind | source | variant | injected | recall | recall at error |", "|---|---|---|---|---|---|"]
    groups: dict[tuple, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        variant = re.sub(r" \(left out .*\)$", "", o.variant)
        variant = re.sub(r"^qa:\w+ repeats qa:\w+", "5W2H answer repeats another", variant)
        groups[(o.kind, o.source, variant)].append(o)
    for (kind, source, variant), rows in sorted(groups.items()):
        lines.append(f"| {kind} | {source} | {variant} | {len(rows)} | {sum(o.caught for o in rows) / len(rows):.2f} "
                     f"| {sum(o.caught_error for o in rows) / len(rows):.2f} |")
    return lines


def misses_text(outcomes: list[Outcome], limit: int) -> list[str]:
    lines = []
    for (kind, source), rows in groupby_kind(outcomes).items():
        missed = [o for o in rows if not o.caught]
        if not missed:
            continue
        lines.append(f"- **{kind} / {source}**: {len(missed)} missed of {len(rows)}")
        for o in missed[:limit]:
            shown = o.shown if len(o.shown) <= 240 else o.shown[:240] + " ..."
            lines.append(f"  - `{o.unit_id}` {o.level} {o.target} ({o.variant}): {shown!r}")
    return lines


def groupby_kind(outcomes: list[Outcome]) -> dict:
    out: dict[tuple, list] = defaultdict(list)
    for o in outcomes:
        out[(o.kind, o.source)].append(o)
    return out


# ================================================================ false flags


def false_flags(videos: list[Video]) -> dict:
    """Texts with an error flag / any flag, and flags per check, for the given videos' untouched texts."""
    from hivau.tasks.text.checks import run_checks

    texts = with_error = with_any = 0
    by_check: Counter = Counter()
    texts_by_check: Counter = Counter()
    for video in videos:
        for unit in video.units:
            flags = run_checks(unit.texts, unit.evidence)
            for f in flags:
                by_check[(f.check, f.severity)] += 1
            for text in unit.texts.texts:
                texts += 1
                own = [f for f in flags if f.target == text.target]
                with_error += any(f.severity == "error" for f in own)
                with_any += bool(own)
                for check in {f.check for f in own}:
                    texts_by_check[check] += 1
    return {"texts": texts, "error": with_error, "any": with_any, "by_check": by_check,
            "texts_by_check": texts_by_check}


def false_flag_tables(parts: dict[str, dict]) -> list[str]:
    from hivau.tasks.text.checks import CHECK_NAMES

    lines = ["| set | videos | texts | with an error flag | share | with any flag | share | goals |",
             "|---|---|---|---|---|---|---|---|"]
    for name, (n, r) in parts.items():
        err, anyf = r["error"] / r["texts"], r["any"] / r["texts"]
        ok = "met" if err < FALSE_GOALS["error"] and anyf < FALSE_GOALS["any"] else "**missed**"
        lines.append(f"| {name} | {n} | {r['texts']} | {r['error']} | {100 * err:.2f}% | {r['any']} | "
                     f"{100 * anyf:.2f}% | < 2% / < 10% {ok} |")
    lines += ["", "| check | " + " | ".join(f"{name}: error / warn flags" for name in parts) + " | texts flagged (all) |",
              "|---|" + "---|" * (len(parts) + 1)]
    everything = next(iter(parts.values()))[1]
    for check in CHECK_NAMES:
        cells = [f"{r['by_check'][(check, 'error')]} / {r['by_check'][(check, 'warn')]}" for _, r in parts.values()]
        lines.append(f"| {check} | " + " | ".join(cells) + f" | {everything['texts_by_check'][check]} |")
    return lines


# ================================================================ cost (children: fresh processes)

COLOURS = ["white", "red", "green", "purple", "yellow", "orange", "blue", "black", "gray", "brown", "pink", "silver"]
OBJECTS = {"car": ["car", "truck", "van", "taxi", "jeep", "bus"], "shirt": ["shirt", "jacket", "coat", "hoodie",
                                                                           "sweater", "vest"],
           "sidewalk": ["sidewalk", "pavement", "walkway", "footpath"], "road": ["road", "street", "lane", "avenue"],
           "buildings": ["buildings", "houses", "shops", "offices"], "fireball": ["fireball", "flash", "flame"],
           "smoke": ["smoke", "dust", "steam"]}


def _substitution(rng: random.Random) -> Callable[[str], str]:
    """A per-video rewrite of colours (a permutation: different colours stay different) and objects."""
    colours = dict(zip(COLOURS, rng.sample(COLOURS, len(COLOURS))))
    objects = {k: rng.choice(v) for k, v in OBJECTS.items()}
    table = {**colours, **objects}
    pattern = re.compile(r"\b(" + "|".join(table) + r")\b", re.I)

    def rewrite(text: Optional[str]) -> Optional[str]:
        if not text:
            return text
        return pattern.sub(lambda m: (table[m.group(0).lower()].capitalize() if m.group(0)[0].isupper()
                                      else table[m.group(0).lower()]), text)

    return rewrite


def synthetic_item(template, index: int, seed: int):
    """A demo record with a new video id (and segment ids) and its texts rewritten the same way everywhere, so the
    summaries stay grounded in the captions."""
    from hivau.schemas.item import VideoItem

    new_id = f"syn{index:06d}"
    item = VideoItem.model_validate_json(template.model_dump_json().replace(template.video_id, new_id))
    rewrite = _substitution(random.Random(f"{seed}-{index}"))
    for c in item.captions:
        c.text = rewrite(c.text)
    for s in item.summaries:
        s.text, s.judgement, s.description, s.analysis = map(rewrite, (s.text, s.judgement, s.description, s.analysis))
    for p in item.qa:
        p.answer = rewrite(p.answer)
    return item


def _hwm_mb() -> float:
    """This process's own peak resident set (VmHWM: reset at exec, unlike ru_maxrss, which a child inherits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_cost(spec: dict) -> dict:
    """One fresh process: read the demo's records, then `check_item` over `count` synthetic records (made one at a
    time, not timed), timing each call."""
    import resource

    from hivau.tasks.text.nlp import cache_size, english
    from hivau.tasks.text.verify import check_item, summary_texts
    from hivau.workspace import Workspace

    templates = sorted(Workspace.at(spec["workspace"]).iter_videos(), key=lambda i: i.video_id)
    started = time.perf_counter()
    english()  # the model's load, once per process, reported apart from the per-record time
    load_s = time.perf_counter() - started
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_video, cpu, texts, flags = [], 0.0, 0, 0
    for index in range(spec["start"], spec["start"] + spec["count"]):
        item = synthetic_item(templates[index % len(templates)], index, spec["seed"])
        texts += len(item.captions) + sum(len(summary_texts(s)) for s in item.summaries) + len(item.qa)
        t0, c0 = time.perf_counter(), time.process_time()
        flags += len(check_item(item))
        per_video.append(time.perf_counter() - t0)
        cpu += time.process_time() - c0  # less swayed than wall time by other work on the machine
    return {"count": spec["count"], "seconds": sum(per_video), "cpu_s": cpu, "per_video": per_video, "texts": texts,
            "parse_cache": cache_size(),
            "flags": flags, "load_s": load_s, "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "ru_maxrss_after_load_mb": rss_loaded, "hwm_mb": _hwm_mb(),
            "torch_loaded": sys.modules.get("torch") is not None}


def run_children(specs: list[dict]) -> list[dict]:
    """Each spec in its own fresh process, all at once (one per core); their last output line."""
    procs = [subprocess.Popen([sys.executable, __file__, "--child", json.dumps(s)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir()) for s in specs]
    out = []
    for p in procs:
        stdout, stderr = p.communicate()
        if p.returncode:
            raise RuntimeError(f"cost child failed:\n{stderr[-3000:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def measure_cost(workspace: Path, sizes: list[int], workers: int, seed: int) -> list[dict]:
    rows = []
    for n in sizes:
        shares = [n // workers + (1 if w < n % workers else 0) for w in range(workers)]
        starts = [sum(shares[:w]) for w in range(workers)]
        started = time.perf_counter()
        results = run_children([{"workspace": str(workspace), "start": s, "count": c, "seed": seed}
                                for s, c in zip(starts, shares) if c])
        wall = time.perf_counter() - started
        per_video = [t for r in results for t in r["per_video"]]
        seconds = sum(r["seconds"] for r in results)
        texts = sum(r["texts"] for r in results)
        rows.append({"videos": n, "workers": len(results), "texts": texts, "seconds": seconds, "wall_s": wall,
                     "ms_video": 1000 * seconds / n, "cpu_ms_video": 1000 * sum(r["cpu_s"] for r in results) / n,
                     "per_process": max(shares), "parse_cache": max(r["parse_cache"] for r in results),
                     "p50_ms": 1000 * statistics.median(per_video),
                     "p95_ms": 1000 * statistics.quantiles(per_video, n=20)[-1], "ms_text": 1000 * seconds / texts,
                     "flags": sum(r["flags"] for r in results), "load_s": max(r["load_s"] for r in results),
                     "ru_maxrss_mb": max(r["ru_maxrss_mb"] for r in results),
                     "ru_maxrss_after_load_mb": max(r["ru_maxrss_after_load_mb"] for r in results),
                     "hwm_mb": max(r["hwm_mb"] for r in results),
                     "torch_loaded": any(r["torch_loaded"] for r in results)})
        print(f"  cost: {n} videos in {wall:.0f} s ({rows[-1]['ms_video']:.1f} ms/video)", flush=True)
    return rows


def cost_table(rows: list[dict]) -> list[str]:
    lines = ["| videos | texts | processes x videos | check_item s (sum) | ms / video | CPU ms / video | "
             "p50 / p95 ms / video | ms / text | wall s | peak RSS MB (ru_maxrss) | after model load MB | VmHWM MB | "
             "parse cache entries | torch in sys.modules |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['videos']:,} | {r['texts']:,} | {r['workers']} x {r['per_process']:,} | {r['seconds']:.1f} | "
                     f"{r['ms_video']:.1f} | {r['cpu_ms_video']:.1f} | {r['p50_ms']:.1f} / {r['p95_ms']:.1f} | "
                     f"{r['ms_text']:.2f} | {r['wall_s']:.0f} | {r['ru_maxrss_mb']:.0f} | "
                     f"{r['ru_maxrss_after_load_mb']:.0f} | {r['hwm_mb']:.0f} | {r['parse_cache']:,} | "
                     f"{'yes' if r['torch_loaded'] else 'no'} |")
    return lines


# ================================================================ the demo


def build_demo(work: Path, seed: int) -> tuple[Path, float]:
    """The demo rendered and built (copy cuts, offline extractive roll-up) into `work`; reused when there."""
    ws, stamp = work / "ws", work / "build_seconds.txt"
    if stamp.is_file() and ws.is_dir():  # the stamp is written after a build that finished
        return ws, float(stamp.read_text())
    from hivau.demo import write_demo  # renders with ffmpeg; imports nothing of the checks

    write_demo(work / "demo", seed=seed, with_faults=False)
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hivau.cli", "build", "--videos", str(work / "demo" / "videos"),
                    "--annotations", str(work / "demo" / "annotations.json"), "--workspace", str(ws),
                    "--cut-mode", "copy"], check=True, env=env, stdout=subprocess.DEVNULL, cwd=work)
    seconds = time.perf_counter() - started
    stamp.write_text(f"{seconds:.3f}")
    return ws, seconds


def build_share_table(ws: Path, wall: float) -> list[str]:
    from hivau.workspace import Workspace

    stages = Workspace.at(ws).batches()[0].last_build["seconds_by_stage"]
    total = sum(stages.values())
    lines = ["| stage | seconds | share of the stages' total |", "|---|---|---|"]
    for name, s in stages.items():
        lines.append(f"| {name}{' (verify)' if name.startswith('verify') else ''} | {s:.3f} | {100 * s / total:.1f}% |")
    verify = sum(s for k, s in stages.items() if k.startswith("verify"))
    lines += [f"| **verify_captions + verify** | {verify:.3f} | {100 * verify / total:.1f}% |",
              f"| all stages | {total:.3f} | 100% |", "",
              f"The build command's wall time was {wall:.1f} s (with Python start-up, the Prefect server and the "
              f"manifests); the verify stages are {100 * verify / wall:.1f}% of it."]
    return lines


# ================================================================ main


def code_version() -> str:
    """The commit measured, and the files of the text tasks changed on top of it (others edit the tree too)."""
    def git(*cmd: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--short", "--", "tasks/text").splitlines()
    return f"commit {git('rev-parse', '--short', 'HEAD')}" + (
        f" with uncommitted changes to {', '.join(line.split()[-1] for line in dirty)}" if dirty else "")


def machine() -> str:
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, spaCy {version('spacy')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, nargs="+", default=[1000, 4000], help="synthetic store sizes (cost)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    parser.add_argument("--share", type=float, default=0.10, help="share of the eligible items given each defect")
    parser.add_argument("--min-per-kind", type=int, default=12, help="least injections per kind and source")
    parser.add_argument("--workers", type=int, default=2, help="processes the cost part runs at once (one per core)")
    parser.add_argument("--hivau", type=Path, default=HIVAU_FILE, help="HIVAU-70k annotation file (the test split)")
    parser.add_argument("--work", type=Path, help="keeps the built demo between runs (default: a temporary folder)")
    parser.add_argument("--show-misses", type=int, default=5, help="missed examples shown per kind and source")
    parser.add_argument("--parts", default="recall,false,cost", help="which parts to run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_cost(json.loads(args.child))))
        return
    parts = set(args.parts.split(","))
    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="hivau-bench-verify-"))
    work.mkdir(parents=True, exist_ok=True)
    ws, build_wall = build_demo(work, args.seed)
    print(f"demo built in {build_wall:.0f} s: {ws}", flush=True)
    # the cost children first, while this process is small: on Linux a child's ru_maxrss starts from its parent's
    cost_rows = measure_cost(ws, args.videos, args.workers, args.seed) if "cost" in parts else []

    from hivau.workspace import Workspace

    records = sorted(Workspace.at(ws).iter_videos(), key=lambda i: i.video_id)
    n_records, demo = len(records), store_videos(records)
    hivau = hivau_videos(args.hivau)
    corpus = caption_corpus(hivau)
    outcomes: list[Outcome] = []
    if "recall" in parts:
        from hivau.tasks.text.checks import DEFECT_KINDS

        for kind in DEFECT_KINDS:
            for source, videos in (("demo", demo), ("hivau", hivau)):
                outcomes += seed_defects(source, videos, kind, args.seed, args.share, args.min_per_kind, corpus)
            print(f"  recall: {kind} done", flush=True)
    false = {}
    if "false" in parts:
        false = {"all": (len(hivau), false_flags(hivau)),
                 "even videos": (len(hivau[0::2]), false_flags(hivau[0::2])),
                 "odd videos": (len(hivau[1::2]), false_flags(hivau[1::2]))}

    lines = ["## Draft checks (`benchmarks/bench_verify.py`)", "",
             f"Seed {args.seed}; {int(100 * args.share)}% of the eligible items per defect kind (at least "
             f"{args.min_per_kind} per kind and source); demo: {len(demo)} videos with texts "
             f"({sum(len(v.units) for v in demo)} clips, events and videos), HIVAU-70k test file: {len(hivau)} videos "
             f"({sum(len(v.units) for v in hivau)} clips, events and videos). Code: {code_version()}. "
             f"Machine: {machine()}.", ""]
    if outcomes:
        table, missed = recall_table(outcomes)
        lines += ["### Recall on seeded defects", "",
                  "Caught: a flag of the kind's checks (`DEFECT_KINDS`) that the clean item did not have; recall at "
                  "error: such a flag at `error`. Flagged before: injected items that already carried a flag of "
                  "those checks (not counted as caught).", "", *table, "",
                  f"Goals missed: {', '.join(missed) if missed else 'none'}.", "",
                  "#### By variant", "", *variant_table(outcomes), "",
                  f"#### Missed examples (up to {args.show_misses} per kind and source)", "",
                  *(misses_text(outcomes, args.show_misses) or ["none"]), ""]
    if false:
        lines += ["### False flags on HIVAU-70k's human texts (checked as drafts)", "",
                  *false_flag_tables(false), ""]
    if cost_rows:
        lines += ["### Cost of the verify stage", "",
                  f"`verify.check_item` over synthetic store records (the demo's {n_records} records in turn, "
                  f"{n_records - len(demo)} of them without texts, with new ids and colours / objects swapped per "
                  "record), every level; "
                  f"{args.workers} fresh processes per size, each making its records one at a time. Time: the calls "
                  "only (the model's load apart); peak RSS: the largest of the processes. Memory grows with the "
                  "records a process has checked until `nlp.parse`'s cache (`nlp.CACHE_SIZE`, 2,048 parsed texts) is full.", "",
                  *cost_table(cost_rows), "",
                  "#### The verify stages in the demo build", "", *build_share_table(ws, build_wall), ""]
    lines.append(f"Run took {time.perf_counter() - started:.0f} s.")
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
