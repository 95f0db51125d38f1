"""Offline roll-up backend: summaries, splits and 5W2H pairs extracted from the captions with spaCy.

Deterministic and network-free, so the demo and CI run anywhere; every row it writes says
`generator=extractive`. It only rearranges what the captions say (and the item's labels and times);
where the captions do not say something, the answer says so instead of guessing.
"""

from __future__ import annotations

from hivau.schemas.records import Generator
from hivau.tasks.text.contracts import (
    QA_TYPES,
    ChainOut,
    ObservationOut,
    QAItemOut,
    QAOut,
    SummaryOut,
    TextContext,
    check_chain,
    check_qa,
    check_summary,
)
from hivau.tasks.text.motion import motion_phrases, noun_core
from hivau.tasks.text.nlp import model_id, parse

VERSION = "extractive@1"
PLACE_PREPS = {"from", "in", "on", "at", "near", "along", "across", "into", "onto", "through", "inside", "outside",
               "behind", "beside", "under", "over", "toward", "towards", "past", "around", "between"}
PERSON_WORDS = {"man", "woman", "person", "people", "men", "women", "boy", "girl", "child", "children", "guard",
                "officer", "police", "driver", "pedestrian", "crowd", "he", "she", "they", "someone", "customer",
                "clerk", "worker", "suspect", "victim", "thief", "robber", "group"}
SCENE_PREPS = {"in", "on", "at", "near", "inside", "outside", "behind", "beside", "under", "along"}
MAX_DESCRIPTION_SENTENCES = 5
NOT_STATED = "The captions do not say."
TIME_UNITS = {"s", "sec", "second", "minute", "hour", "frame"}


def _texts(ctx: TextContext) -> list[str]:
    """What happens, in time order: clip captions for an event, event descriptions for a video."""
    return [text for _, _, text in (ctx.facts if ctx.facts is not None else ctx.lines)]


def _sentences(ctx: TextContext) -> list[str]:
    """The texts' sentences in time order, exact repeats dropped."""
    seen, out = set(), []
    for text in _texts(ctx):
        for sent in parse(text).sents:
            clean = sent.text.strip()
            if clean and clean.lower() not in seen:
                seen.add(clean.lower())
                out.append(clean)
    return out


def _phrases(ctx: TextContext) -> list[str]:
    """Motion phrases of the texts; those with a subject first (they read as statements)."""
    seen, with_subject, without = set(), [], []
    for text in _texts(ctx):
        for phrase in motion_phrases(text):
            if phrase.text.lower() not in seen:
                seen.add(phrase.text.lower())
                (with_subject if phrase.subjects else without).append(phrase.text)
    return with_subject + without


def _first_sentences(text: str, n: int) -> str:
    return " ".join(s.text.strip() for s in list(parse(text).sents)[:n] if s.text.strip())


def _join(items: list[str], limit: int = 3) -> str:
    items = items[:limit]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _span(ctx: TextContext) -> str:
    return f"from {ctx.start_s:.1f} s to {ctx.end_s:.1f} s"


def _anomaly_span(ctx: TextContext) -> str:
    """At video level, the times of the anomalous events; else the item's own span."""
    if ctx.anomalous_spans:
        return " and ".join(f"from {s:.1f} s to {e:.1f} s" for s, e in ctx.anomalous_spans)
    return _span(ctx)


def _place(prep) -> str | None:
    """`near the door` for a place preposition hanging off a verb, not `in a red shirt` off a noun."""
    if prep.dep_ != "prep" or prep.lower_ not in PLACE_PREPS or prep.head.pos_ not in ("VERB", "AUX"):
        return None
    pobj = next((c for c in prep.children if c.dep_ == "pobj"), None)
    if pobj is None or pobj.pos_ == "PRON" or pobj.lemma_.lower() in PERSON_WORDS:
        return None
    return " ".join(t.text for t in pobj.doc[pobj.left_edge.i: pobj.i + 1]).join((f"{prep.text} ", ""))


def _who_where_how_many(docs) -> tuple[list[str], list[str], list[str]]:
    """The texts' subjects ("a man in a red shirt"), places ("near the door") and counted things, each once."""
    subject_chunks, places, counts = [], [], []
    for doc in docs:
        for chunk in doc.noun_chunks:
            if chunk.root.dep_ in ("nsubj", "nsubjpass") and chunk.root.pos_ != "PRON":
                subject_chunks.append(chunk.text[0].lower() + chunk.text[1:])
        for token in doc:
            place = _place(token)
            if place:
                places.append(place)
            if token.dep_ == "nummod" and token.head.pos_ in ("NOUN", "PROPN") \
                    and token.head.lemma_.lower() not in TIME_UNITS:
                counts.append(noun_core(token.head))
    unique = lambda xs: list(dict.fromkeys(x for x in xs))  # noqa: E731 - order-keeping dedupe
    return unique(subject_chunks), unique(places), unique(counts)


def _scene(ctx: TextContext, sentences: list[str]) -> str:
    """Who is seen, and where, as the texts name them; else their first sentence."""
    subjects, places, _ = _who_where_how_many([parse(text) for text in _texts(ctx)])
    by_noun = {}
    for chunk in subjects:  # "a man" and "the man": one man, as first named
        by_noun.setdefault(chunk.split()[-1], chunk)
    subjects = list(by_noun.values())
    places = [p for p in places if p.split()[0] in SCENE_PREPS]  # where things are, not where they go
    if not subjects:
        return sentences[0] if sentences else NOT_STATED
    where = f", {_join(places, 2)}" if places else ""
    return f"The {ctx.level} shows {_join(subjects)}{where}."


class ExtractiveBackend:
    name = "extractive"

    def generator(self, task: str) -> Generator:
        return Generator(backend=self.name, model=model_id(), prompt_version=VERSION)

    def summarize_now(self, ctx: TextContext) -> SummaryOut:
        sentences = _sentences(ctx)
        description = " ".join(sentences[:MAX_DESCRIPTION_SENTENCES])
        if ctx.is_anomaly:
            judgement = f"An anomaly ({ctx.label_text}) occurs in this {ctx.level} {_anomaly_span(ctx)}."
            phrases = _phrases(ctx)
            evidence = _join(phrases) if phrases else description
            analysis = f"It is abnormal for {ctx.label_text.lower()}: the captions describe {evidence}."
        else:
            judgement = f"No anomaly occurs in this {ctx.level}."
            analysis = None
        summary = " ".join(p for p in (judgement, description, analysis) if p)
        return check_summary(ctx.is_anomaly)(SummaryOut(summary=summary, judgement=judgement,
                                                       description=description, analysis=analysis))

    def qa_now(self, ctx: TextContext) -> QAOut:
        docs = [parse(text) for text in _texts(ctx)]
        phrases = _phrases(ctx)
        subject_chunks, places, counts = _who_where_how_many(docs)
        first_sentence = next((s for doc in docs for s in doc.sents), None)
        what = (f"{ctx.label_text}: {_join(phrases)}." if ctx.is_anomaly and phrases
                else first_sentence.text.strip() if first_sentence else NOT_STATED)
        when = (f"The anomaly happens {_anomaly_span(ctx)}." if ctx.is_anomaly
                else f"The {ctx.level} runs {_span(ctx)}.")
        why = (f"It is labelled {ctx.label_text} because the captions describe {_join(phrases)}." if ctx.is_anomaly
               and phrases else f"It is labelled {ctx.label_text}." if ctx.is_anomaly
               else "The captions describe only ordinary activity" + (f": {_join(phrases)}." if phrases else "."))
        answers = {
            "what": what,
            "who": f"{_join(subject_chunks)}." if subject_chunks else NOT_STATED,
            "where": f"{_join(places).capitalize()}." if places else NOT_STATED,
            "when": when,
            "how": f"{_join(phrases, 4).capitalize()}." if phrases else NOT_STATED,
            "how_much": f"{_join(counts).capitalize()}." if counts else NOT_STATED,
            "why": why,
        }
        subject = f"the anomaly in this {ctx.level}" if ctx.is_anomaly else f"this {ctx.level}"
        questions = {
            "what": f"What happens in {subject}?", "who": f"Who is involved in {subject}?",
            "where": f"Where does {subject} take place?", "when": f"When does {subject} happen?",
            "how": f"How does {subject} unfold?", "how_much": f"How many people or vehicles are involved in {subject}?",
            "why": (f"Why is this {ctx.level} considered anomalous?" if ctx.is_anomaly
                    else f"Why is this {ctx.level} considered normal?"),
        }
        return check_qa(QAOut(pairs=[QAItemOut(qa_type=t, question=questions[t], answer=answers[t][0].upper()
                                               + answers[t][1:]) for t in QA_TYPES]))

    def reason_now(self, ctx: TextContext) -> ChainOut:
        """A chain rearranged from the store: the first sentence as the scene, each timed text's first sentences as
        the observations, the motion phrases as what happens, the item's analysis (or its phrases) as why, the
        first and last things the texts record as lead-up and outcome, and a conclusion from the label."""
        timed = ctx.facts if ctx.facts is not None else ctx.lines
        observations = [ObservationOut(start_s=s, end_s=e, text=_first_sentences(text, 2)) for s, e, text in timed]
        sentences = _sentences(ctx)
        scene = _scene(ctx, sentences)
        phrases = _phrases(ctx)
        happens = _join(phrases) if phrases else (sentences[0] if sentences else NOT_STATED)
        if ctx.is_anomaly:
            what = f"The texts describe {happens}; this is {ctx.label_text}."
            why = _first_sentences(ctx.analysis, 2) if ctx.analysis else \
                f"It departs from normal activity: {happens} is {ctx.label_text.lower()}, not ordinary behaviour."
            cause = f"What leads up to it, as recorded: {sentences[0]}" if len(sentences) > 1 else NOT_STATED
            consequence = f"What follows, as recorded: {sentences[-1]}" if len(sentences) > 1 else NOT_STATED
            conclusion = f"An anomaly occurs: {ctx.label_text}, {_anomaly_span(ctx)}."
        else:
            what = f"The texts describe {happens}."
            why = f"The texts describe only ordinary activity, and the {ctx.level} is labelled normal."
            cause = consequence = None
            conclusion = f"This {ctx.level} is normal; no anomaly occurs."
        return check_chain(ctx.is_anomaly)(ChainOut(scene=scene, observations=observations, what_happens=what, why=why,
                                                   cause=cause, consequence=consequence, conclusion=conclusion))

    async def summarize(self, ctx: TextContext) -> SummaryOut:
        return self.summarize_now(ctx)

    async def reason(self, ctx: TextContext) -> ChainOut:
        return self.reason_now(ctx)

    async def qa(self, ctx: TextContext) -> QAOut:
        return self.qa_now(ctx)
