"""Motion phrases (HAWK sec. 3.3): subject-verb-object phrases from a dependency parse of ground-truth text.

HAWK's released extraction keeps a verb's direct `nsubj`/`nsubjpass` and `dobj` children only. Here a
phrase also keeps passive agents ("car hit by truck"), particles ("picks up bag"), prepositional objects
("runs into street"), objects joined by "and", negation, and a subject inherited from the verb it is
coordinated with ("a man breaks the window and steals a bag" -> "man steals bag").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional

from hivau.schemas.item import Tables
from hivau.schemas.records import Caption, Generator, MotionPhraseRecord, Summary
from hivau.tasks.text.nlp import model_id, parse, parse_many

SUBJECT_DEPS = {"nsubj", "nsubjpass", "csubj", "csubjpass", "expl"}
OBJECT_DEPS = {"dobj", "obj", "dative", "attr", "oprd"}
# Verbs that take their subject from the verb they hang off when they have none of their own.
INHERITING_DEPS = {"conj", "xcomp", "dep", "advcl"}


@dataclass
class MotionPhrase:
    verb: str  # the verb as written
    lemma: str
    subjects: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    particle: Optional[str] = None
    negated: bool = False
    preps: list[str] = field(default_factory=list)  # "into street", "by truck" (passive agent)

    @property
    def text(self) -> str:
        verb = ("not " if self.negated else "") + self.verb + (f" {self.particle}" if self.particle else "")
        parts = [" and ".join(self.subjects), verb, " and ".join(self.objects), *self.preps]
        return " ".join(p for p in parts if p)


def noun_core(token) -> str:
    """A noun with its compound modifiers ("police car"), without determiners or adjectives."""
    words = [t for t in token.lefts if t.dep_ in ("compound", "nummod")] + [token]
    return " ".join(w.text if w.pos_ == "PROPN" else w.lower_ for w in words)


def _with_conjuncts(token) -> list:
    """The token and the nouns coordinated with it ("a bag and a phone")."""
    return [token, *[t for t in token.conjuncts if t.i > token.i and t.pos_ in ("NOUN", "PROPN", "PRON", "NUM")]]


def _own_subjects(verb) -> list:
    return [s for child in verb.children if child.dep_ in SUBJECT_DEPS for s in _with_conjuncts(child)]


def _subjects(verb) -> list:
    """The verb's subjects, else those of the verb it is coordinated with (walking up the chain)."""
    seen = verb
    while True:
        own = _own_subjects(seen)
        if own or seen.dep_ not in INHERITING_DEPS or seen.head is seen or seen.head.pos_ not in ("VERB", "AUX"):
            return own
        seen = seen.head


def phrase_for(verb) -> MotionPhrase:
    phrase = MotionPhrase(verb=verb.text, lemma=verb.lemma_.lower())
    phrase.subjects = [noun_core(s) for s in _subjects(verb)]
    for child in verb.children:
        if child.dep_ in OBJECT_DEPS:
            phrase.objects += [noun_core(o) for o in _with_conjuncts(child)]
        elif child.dep_ == "prt":
            phrase.particle = child.text
        elif child.dep_ == "neg":
            phrase.negated = True
        elif child.dep_ in ("prep", "agent"):
            for pobj in [p for p in child.children if p.dep_ == "pobj"][:1]:
                nouns = " and ".join(noun_core(o) for o in _with_conjuncts(pobj))
                phrase.preps.append(f"{child.text} {nouns}")
    return phrase


def _verbs(text: str) -> list:
    return [token for token in parse(text) if token.pos_ == "VERB"]


def motion_phrases(text: str) -> list[MotionPhrase]:
    """Every verb with a subject, an object or a prepositional object, in text order."""
    phrases = [phrase_for(verb) for verb in _verbs(text)]
    return [p for p in phrases if p.subjects or p.objects or p.preps]


def hawk_baseline_phrases(text: str) -> list[str]:
    """HAWK's released rule (direct nsubj/nsubjpass and dobj children only), kept for comparison."""
    out = []
    for verb in _verbs(text):
        subj = [c.text for c in verb.children if c.dep_ in ("nsubj", "nsubjpass")]
        obj = [c.text for c in verb.children if c.dep_ == "dobj"]
        if subj or obj:
            out.append(" ".join(subj + [verb.text] + obj))
    return out


MOTION_VERSION = "motion@1"


def _sources(captions: list[Caption], summaries: list[Summary]) -> list[tuple]:
    """(item id, level, video id, source, text, provenance) of every text motion phrases are taken from."""
    out = [(c.item_id, c.level, c.video_id, "caption", c.text, c.provenance) for c in captions]
    out += [(s.item_id, s.level, s.video_id, "description" if s.description else "summary", s.description or s.text,
             s.provenance) for s in summaries]
    return out


def _extract(item_id: str, level, video_id: str, source, text: str, provenance) -> list[MotionPhraseRecord]:
    generator = Generator(backend="spacy", model=model_id(), prompt_version=MOTION_VERSION)
    return [MotionPhraseRecord(item_id=item_id, level=level, video_id=video_id, source=source, text=phrase.text,
                               verb=phrase.lemma, subjects=phrase.subjects, objects=phrase.objects,
                               preps=phrase.preps, text_provenance=provenance, generator=generator)
            for phrase in motion_phrases(text)]


def motion_records(item) -> list[MotionPhraseRecord]:
    """Motion phrases of every caption and summary description of one video's drafts (a new list)."""
    sources = [src for src in _sources(item.captions, item.summaries) if src[4].strip() and src[5] != "rejected"]
    parse_many([src[4] for src in sources])  # one batch: spaCy's pipe is faster than one text at a time
    return [r for src in sources for r in _extract(*src)]


# texts a review left as drafted: their phrases are the drafts' own
UNCHANGED = ("human", "auto_draft", "accepted")


def edited_key(item_id: str, source: str, text: str) -> str:
    """Where an edited text's phrases are kept: its item, its field and the text itself."""
    return f"{item_id}|{source}|{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def merged_motion_records(tables: Tables, parsed: dict[str, list[dict]]) -> tuple[list[MotionPhraseRecord], dict]:
    """Motion phrases of the merged texts: a text a reviewer left as drafted keeps the phrases extracted from its
    draft (`tables.motion_phrases`), an edited text has its own, a rejected or re-timed one none.

    `parsed` holds edited texts' phrases from earlier writes (by `edited_key`); only texts not in it are parsed,
    so spaCy runs once per text however often the manifests are written. Returns the records and the edited
    texts' phrases now in use (what to keep for the next write)."""
    drafted: dict[tuple[str, str], list[MotionPhraseRecord]] = {}
    for r in tables.motion_phrases:
        drafted.setdefault((r.item_id, r.source), []).append(r)
    out, used = [], {}
    for item_id, level, video_id, source, text, provenance in _sources(tables.captions, tables.summaries):
        if not text.strip() or provenance in ("rejected", "boundaries_corrected"):
            continue
        if provenance in UNCHANGED:
            out += [r if r.text_provenance == provenance else r.model_copy(update={"text_provenance": provenance})
                    for r in drafted.get((item_id, source), [])]
            continue
        key = edited_key(item_id, source, text)
        used[key] = parsed[key] if key in parsed else [r.model_dump(mode="json") for r in
                                                        _extract(item_id, level, video_id, source, text, provenance)]
        out += [MotionPhraseRecord.model_validate(r) for r in used[key]]
    return out, used
