"""Draft checks: plain functions over one item's texts and the store's evidence for it, each returning flags.

Every check has one signature, `check(texts: ItemTexts, evidence: Evidence) -> list[Flag]`, and its function
name is the flag's `check` and its stat key. The evidence is what the record itself knows: the span's clip
captions, the labels, the times, the neighbouring clips, the video's anomalous events. Grounding compares
lemmas (spaCy), with a synonym map for this field's words and a shared-prefix match for derived forms
("explosion" / "exploded"), so paraphrase passes and new objects do not.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Callable, Iterable, Optional

from hivau.schemas.chains import PART_OF, parse_chain
from hivau.schemas.records import Severity
from hivau.tasks.text.contracts import QA_TYPES
from hivau.tasks.text.nlp import parse
from hivau.tasks.text.vocabulary import (
    ANOMALY_SIGNS,
    CLASS_ALIASES,
    CLASS_GROUPS,
    COUNT_WORDS,
    FUNCTION_WORDS,
    GENERAL_NOUNS,
    LABEL_WORDS,
    LENGTH_RANGES,
    NORMAL_CLAIMS,
    NORMAL_SIGNS,
    QUIET_VERBS,
    SYNONYMS,
    VERB_ONLY,
    VERBS,
    VISIBLE,
    class_key,
    is_abstract,
)

SUMMARY_FIELDS = ("summary", "judgement", "description", "analysis")
CONCLUSION = "chain:conclusion"
# words that claim something abnormal happens in a summary, unless negated ("with no unusual or suspicious events")
ANOMALY_CLAIMS = {"anomaly", "anomalous", "abnormal", "abnormality", "unusual", "suspicious", "strange", "irregular"}
NEGATIONS = {"no", "not", "n't", "nothing", "without", "never", "none", "neither", "nor", "nobody", "non", "devoid",
             "free", "absent", "lack", "lacks", "lacking", "deviate", "deviates", "deviating", "unlike"}
TIME_TOLERANCE_S = 1.0
ERROR_AT_UNSUPPORTED = 3  # times are written to a tenth of a second, and events are cut on frames


@dataclass(frozen=True)
class Flag:
    check: str
    severity: Severity
    target: str
    score: float = 1.0
    evidence: str = ""


@dataclass
class Text:
    target: str  # caption, summary, judgement, description, analysis, qa:{type}, chain:{part}
    text: str
    question: str = ""  # a QA pair's question (part of what the answer may repeat)


@dataclass
class ItemTexts:
    """The machine-checkable texts of one clip, event or video."""

    item_id: str
    level: str
    texts: list[Text] = field(default_factory=list)
    has_summary: bool = False  # event / video: a summary record exists
    qa_types: list[str] = field(default_factory=list)
    chain: Optional[str] = None  # event / video: its reasoning chain's text, when it has one

    def get(self, target: str) -> Optional[Text]:
        return next((t for t in self.texts if t.target == target), None)


@dataclass
class EventEvidence:
    event_id: str
    start_s: float
    end_s: float
    labels: list[str]
    captions: list[str]


@dataclass
class Evidence:
    """What a text of one item may say: its span's captions, labels and times (source-video seconds)."""

    level: str
    labels: list[str]
    is_anomaly: bool
    start_s: float
    end_s: float
    captions: list[str] = field(default_factory=list)  # the clip captions of the span, in time order
    # video level: its events' summaries and descriptions, which its summary is rolled up from
    summaries: list[str] = field(default_factory=list)
    neighbours: list[str] = field(default_factory=list)  # clip level: the previous clip's caption in its event
    events: list[EventEvidence] = field(default_factory=list)  # video level: its anomalous events


# ---------------------------------------------------------------- words
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def _canon(lemma: str) -> str:
    return SYNONYMS.get(lemma, lemma)


def lemmas(text: str) -> set[str]:
    """Every lemma of a text (any part of speech), lower-case, with its synonym-map form beside it."""
    out = set()
    for token in parse(text):
        if token.is_alpha:
            lemma = token.lemma_.lower()
            out.update((lemma, token.lower_, _canon(lemma), _canon(token.lower_)))
    return out


def _prefix_match(word: str, known: set[str]) -> bool:
    """Derived forms share a stem: explosion / explode, robbery / robber, collision / collide."""
    if len(word) < 6:
        return False
    stem = word[:5]
    return any(len(k) >= 5 and k[:5] == stem for k in known)


def concrete_nouns(text: str) -> list[tuple[str, str]]:
    """(canonical lemma, as written) of the nouns that name things one could see: abstract and generic nouns,
    proper names and words of the label vocabulary are left out."""
    out = []
    for token in parse(text):
        common = token.pos_ == "NOUN" or (token.pos_ == "PROPN" and token.text.islower())  # "a delivery van"
        if not common or not token.is_alpha or len(token.text) < 3 or token.dep_ == "ROOT":
            continue  # a ROOT "noun" is nearly always a verb the tagger missed ("An anomaly exists")
        lemma = token.lemma_.lower()
        bare = not any(c.dep_ in ("det", "poss", "amod", "nummod") for c in token.lefts)
        forms = {lemma, token.lower_, token.lower_.removesuffix("s"), token.lower_.removesuffix("ing")}
        if (bare and forms & VERBS and lemma not in VISIBLE) or token.lower_.endswith("wards") or _verb_form(token):
            continue  # "debris occurs", "smoke billowing", "outwards", "a massive explosion ensues": verbs
        if is_abstract(lemma):
            continue
        if token.dep_ == "compound" and is_abstract(token.head.lemma_.lower()):
            continue  # "traffic stop procedures", "safety risk"
        out.append((_canon(lemma), token.text))
    return out


def _verb_form(token) -> bool:
    """A "noun" that is the -s form of a verb that is never a noun ("ensues", "deviates", not "shelves")."""
    low, lemma = token.lower_, token.lemma_.lower()
    return any(low.endswith(end) and low[:-len(end)] == lemma and lemma in VERB_ONLY for end in ("s", "es"))


def counted_nouns(text: str) -> list[tuple[int, str, str]]:
    """(count, canonical noun, as written) for "two men", "a second man", "three cars"."""
    out = []
    for token in parse(text):
        lemma = token.lemma_.lower()
        if token.pos_ != "NOUN" or is_abstract(lemma):
            continue
        for child in token.lefts:
            count = child.lower_
            if count in COUNT_WORDS and child.dep_ in ("nummod", "amod"):
                out.append((COUNT_WORDS[count], _canon(lemma), f"{child.text} {token.text}"))
    return out


MANY = {"many", "several", "multiple", "numerous", "some", "few", "crowd", "group", "lots", "other"}


def mention_counts(texts: Iterable[str]) -> Counter:
    """How many different ones of each thing the texts mention: "a white car and a black car" are two cars (so are
    two "a car" in one text), "two men" two men, "many cars" any number (counted as 99). General words count
    their whole family."""
    seen: dict[str, set] = {}
    counts: Counter = Counter()
    for text in texts:
        introduced: Counter = Counter()  # "a little boy in a red hat and a little boy in a black hat": two boys
        for token in parse(text):
            if token.pos_ != "NOUN":
                continue
            noun = _canon(token.lemma_.lower())
            mods = tuple(sorted(t.lower_ for t in token.subtree if t.i != token.i and t.dep_ not in ("det", "punct")))
            seen.setdefault(noun, set()).add(mods)
            for child in token.lefts:
                if child.lower_ in COUNT_WORDS:
                    counts[noun] = max(counts[noun], COUNT_WORDS[child.lower_])
                elif child.lower_ in MANY:
                    counts[noun] = 99
                elif child.lower_ in ("a", "an", "another"):
                    introduced[noun] += 1
        for noun, n in introduced.items():
            counts[noun] = max(counts[noun], n)
    for noun, variants in seen.items():
        counts[noun] = max(counts[noun], len(variants))
    for general, family in GENERAL_NOUNS.items():
        counts[general] = max(counts[general], sum(counts[m] for m in family if m != general))
    return counts


def _supported(noun: str, known: set[str]) -> bool:
    """Named by the evidence (or a derived form); a general word ("vehicle") when any of its kind is."""
    if noun in GENERAL_NOUNS:
        family = GENERAL_NOUNS[noun]
        return not family or bool(family & known) or noun in known
    return noun in known or _prefix_match(noun, known)


def _negated(sentence, index: int, window: int = 4) -> bool:
    """A word is negated when a negation comes up to `window` words before it in its sentence."""
    start = max(sentence.start, index - window)
    return any(t.lower_ in NEGATIONS for t in sentence.doc[start:index])


def _summary_texts(texts: ItemTexts) -> list[Text]:
    return [t for t in texts.texts if t.target in SUMMARY_FIELDS and t.text.strip()]


# ---------------------------------------------------------------- the checks
def unsupported_content(texts: ItemTexts, evidence: Evidence) -> list[Flag]:
    """Things no clip caption of the span mentions (a knife, a fire, a second man). Error at three or more
    unsupported nouns in one text or a count the captions do not give ("two men" where they saw one); fewer
    is a warning (people's summaries add a "road" or a "crowd" that no caption named)."""
    if texts.level == "clip" or not evidence.captions:
        return []
    label_words = [w for lb in evidence.labels
                   for w in [*LABEL_WORDS.get(class_key(lb), ()), *words(lb), class_key(lb), lb.lower()]]
    sources = evidence.captions + evidence.summaries
    known = set().union(*(lemmas(c) for c in sources), *(lemmas(w) for w in label_words))
    known |= {_canon(w) for c in sources for w in words(c)}
    seen_counts = mention_counts(sources)
    flags = []
    for text in texts.texts:
        if text.target == "judgement" or not text.text.strip():
            continue
        own = lemmas(text.question) if text.question else set()
        unsupported: dict[str, str] = {}  # one per thing: "a store or shop" names one unsupported thing
        for noun, written in concrete_nouns(text.text):
            if not _supported(noun, known) and noun not in own:
                unsupported.setdefault(noun, written)
        missing = list(unsupported.values())
        counts = [written for count, noun, written in counted_nouns(text.text)
                  if count > 1 and seen_counts[noun] < count]
        if len(missing) >= ERROR_AT_UNSUPPORTED or counts:
            severity = "error"
        elif missing:
            severity = "warn"
        else:
            continue
        flags.append(Flag("unsupported_content", severity, text.target, float(len(missing) + len(counts)),
                          ", ".join(counts + missing)))
    return flags


def _names_classes(text: str) -> list[tuple[str, bool]]:
    """(class key, negated) for each anomaly class a text names."""
    doc = parse(text)
    found = []
    for sentence in doc.sents:
        low = sentence.text.lower()
        for alias, key in CLASS_ALIASES.items():
            for match in re.finditer(rf"\b{re.escape(alias)}\b", low):
                token = doc.char_span(sentence.start_char + match.start(), sentence.start_char + match.end(),
                                      alignment_mode="expand")
                found.append((key, bool(token) and _negated(sentence, token.start)))
    return found


def _claims_normal(text: str, patterns: tuple[str, ...] = NORMAL_CLAIMS) -> Optional[str]:
    low = " ".join(text.lower().split())
    return next((m.group(0) for pattern in patterns if (m := re.search(pattern, low))), None)


def _claims_anomaly(text: str) -> Optional[str]:
    doc = parse(text)
    for sentence in doc.sents:
        for token in sentence:
            if token.lemma_.lower() in ANOMALY_CLAIMS and not _negated(sentence, token.i, window=6) \
                    and not _governs_negation(token):
                return sentence.text.strip()
    return None


def _governs_negation(token) -> bool:
    """"This is not a normal video", "nobody does anything wrong": a negation on the word's head or on the
    head's head, or a word ending the word's own group ("non-suspicious", "devoid of any unusual event")."""
    for head in (token, token.head, token.head.head):
        if any(c.dep_ == "neg" or c.lower_ in NEGATIONS for c in head.children if c.i < token.i):
            return True
    return False


def judgement_stance(text: str) -> tuple[Optional[str], str]:
    """Whether a judgement says the item is anomalous or normal: ("anomaly" | "normal" | None, the words that
    decided). Each sign of an anomaly ("unusual", "incident", "violent", a class name) or of normality ("normal",
    "routine", "nothing happens") counts for its side, or for the other side when negated ("no anomaly", "not a
    normal video", "deviates from normal"); None when the signs are even or absent."""
    votes, said = {"anomaly": 0, "normal": 0}, {"anomaly": [], "normal": []}
    doc = parse(text)
    for sentence in doc.sents:
        signs = 0
        for token in sentence:
            lemma = token.lemma_.lower()
            side = "anomaly" if lemma in ANOMALY_SIGNS or lemma in CLASS_ALIASES else \
                "normal" if lemma in NORMAL_SIGNS else None
            if lemma in ("ordinary", "place") and "out of" in doc[max(sentence.start, token.i - 3):token.i].text.lower():
                side = "anomaly"  # "out of the ordinary", "out of place": signs of an anomaly
            if side is None:
                continue
            signs += 1
            if _negated(sentence, token.i, window=6) or _governs_negation(token):
                side = "normal" if side == "anomaly" else "anomaly"
            votes[side] += 1
            said[side].append(token.text)
        quiet = {t.lemma_.lower() for t in sentence} & QUIET_VERBS
        if not signs and quiet and {t.lower_ for t in sentence} & {"nothing", "nobody", "none", "no"}:
            votes["normal"] += 1  # "nothing happens", "there is nothing to report"
            said["normal"].append(" ".join(sorted(quiet)))
    if votes["anomaly"] == votes["normal"]:
        return None, ""
    side = max(votes, key=votes.get)
    return side, ", ".join(said[side])


def label_contradiction(texts: ItemTexts, evidence: Evidence) -> list[Flag]:
    """A judgement, summary or chain conclusion that contradicts the label: normal words for an anomalous item,
    another class named for it (outside its class's family), or an anomaly named for a normal item."""
    if texts.level == "clip":
        return []
    flags = []
    own = {class_key(lb) for lb in evidence.labels}
    families = {k for group in CLASS_GROUPS for k in group if own & group} | own
    conclusions = [t for t in texts.texts if t.target == CONCLUSION and t.text.strip()]
    for text in _summary_texts(texts) + conclusions:
        if text.target == "analysis":
            continue  # the reasoning may compare with other classes
        verdict = text.target in ("judgement", CONCLUSION)  # a chain's conclusion is read as a judgement
        stance, words_said = judgement_stance(text.text) if verdict else (None, "")
        if evidence.is_anomaly:
            said = f"normal ({words_said})" if stance == "normal" else \
                _claims_normal(text.text) if text.target == "summary" else None
            if said:
                flags.append(Flag("label_contradiction", "error", text.target, 1.0, f"says '{said}' of an item "
                                  f"labelled {', '.join(evidence.labels)}"))
                continue
            if not verdict:
                continue  # descriptions may mention fire in an explosion; the class is named in the judgement
            named = {key for key, negated in _names_classes(text.text) if not negated}
            if named and not named & families:
                flags.append(Flag("label_contradiction", "error", text.target, 1.0,
                                  f"names {', '.join(sorted(named))}; labelled {', '.join(evidence.labels)}"))
        else:
            named = sorted({key for key, negated in _names_classes(text.text) if not negated})
            claim = (f"anomalous ({words_said})" if stance == "anomaly" else None) if verdict \
                else _claims_anomaly(text.text) if text.target == "summary" else None
            if named or claim:
                flags.append(Flag("label_contradiction", "error", text.target, 1.0,
                                  f"names {', '.join(named)} in a normal item" if named
                                  else f"claims an anomaly in a normal item: '{claim[:120]}'"))
    return flags


@dataclass(frozen=True)
class TimeMention:
    seconds: float
    kind: str  # point (a moment on the video's clock) or duration
    written: str


_NUM = r"(\d+(?:\.\d+)?)"
_UNIT = r"(s|secs?|seconds?|mins?|minutes?)\b"
_CLOCK = re.compile(r"\b(?:(\d{1,2}):)?(\d{1,2}):(\d{2})(?:\.(\d+))?\b")
_RANGE = re.compile(rf"\b{_NUM}\s*(s|secs?|seconds?)?\s*(?:-|–|to|and|until)\s*{_NUM}\s*{_UNIT}", re.I)
_SINGLE = re.compile(rf"(?<![\d.:-]){_NUM}\s*(?:-\s*)?{_UNIT}", re.I)
_DURATION_BEFORE = re.compile(r"(?:\bfor|lasting|lasts|last|within|after|over|takes|took|spans?)\s+"
                              r"(?:about|around|nearly|almost|only|approximately|roughly|just|some)?\s*$", re.I)


def _seconds(value: str, unit: str) -> float:
    return float(value) * (60.0 if unit.lower().startswith("min") else 1.0)


def times_in(text: str) -> list[TimeMention]:
    """Times a text gives: clock times ("01:12"), ranges ("between 2.5s and 6.2s", "8.6s-11.9s") and single
    times ("at 3.5 s"); "for 7 seconds", "a 7-second clip" and the like are durations."""
    out, taken = [], []
    for m in _CLOCK.finditer(text):
        hours, minutes, secs, frac = m.groups()
        value = int(hours or 0) * 3600 + int(minutes) * 60 + int(secs) + float(f"0.{frac}" if frac else 0)
        out.append(TimeMention(value, "point", m.group(0)))
        taken.append(m.span())
    for m in _RANGE.finditer(text):
        first_unit = m.group(2) or m.group(4)
        out += [TimeMention(_seconds(m.group(1), first_unit), "point", m.group(0)),
                TimeMention(_seconds(m.group(3), m.group(4)), "point", m.group(0))]
        taken.append(m.span())
    for m in _SINGLE.finditer(text):
        if any(a <= m.start() < b for a, b in taken):
            continue
        before = text[max(0, m.start() - 16):m.start()]
        mark = re.match(r"\s*mark\b", text[m.end():m.end() + 8])  # "at the 12-second mark" is a moment
        kind = "duration" if not mark and ("-" in m.group(0) or _DURATION_BEFORE.search(before)) else "point"
        out.append(TimeMention(_seconds(m.group(1), m.group(2)), kind, m.group(0)))
    return out


def time_outside_span(texts: ItemTexts, evidence: Evidence) -> list[Flag]:
    """A time a text gives outside its item's span (or a duration longer than the span)."""
    length = evidence.end_s - evidence.start_s
    tolerance = max(TIME_TOLERANCE_S, 0.05 * length)
    flags = []
    for text in texts.texts:
        bad = [t for t in times_in(text.text)
               if (t.kind == "point" and not evidence.start_s - tolerance <= t.seconds <= evidence.end_s + tolerance)
               or (t.kind == "duration" and t.seconds > length + tolerance)]
        if bad:
            worst = max(max(evidence.start_s - t.seconds, t.seconds - evidence.end_s) for t in bad)
            flags.append(Flag("time_outside_span", "error", text.target, round(worst, 3),
                              f"{'; '.join(dict.fromkeys(t.written for t in bad))} (span {evidence.start_s:.1f}-"
                              f"{evidence.end_s:.1f} s)"))
    return flags


def missing_part(texts: ItemTexts, evidence: Evidence) -> list[Flag]:
    """An empty text, no analysis for an anomalous event or video, a 5W2H type absent or unanswered, a reasoning
    chain without one of its fields (scene, timed observations, what happens, why, conclusion; for an anomaly also
    cause and consequence)."""
    flags = []
    for text in texts.texts:
        if not text.text.strip():
            flags.append(Flag("missing_part", "error", text.target, 1.0, f"empty {text.target}"))
    if texts.chain is not None:
        absent = parse_chain(texts.chain).missing(evidence.is_anomaly)
        emptied = {t.target for t in texts.texts if not t.text.strip()}
        by_part = {}
        for name in absent:
            by_part.setdefault(f"chain:{PART_OF[name]}", []).append(name.replace("_", " "))
        flags += [Flag("missing_part", "error", target, float(len(names)), f"the chain has no {', '.join(names)}")
                  for target, names in by_part.items() if target not in emptied]
    if texts.has_summary and evidence.is_anomaly and texts.level != "clip":
        analysis = texts.get("analysis")
        if analysis is None:
            flags.append(Flag("missing_part", "error", "analysis", 1.0, "no analysis for an anomalous item"))
    if texts.qa_types:
        absent = [t for t in QA_TYPES if t not in texts.qa_types]
        if absent:
            flags.append(Flag("missing_part", "error", "qa", float(len(absent)), f"no {', '.join(absent)} pair"))
    return flags


def repeated_phrase(texts: ItemTexts, evidence: Evidence) -> list[Flag]:
    """A phrase looping: a five-word phrase three times or more, or a word trigram of two content words or more
    three times or more (Cosmos Curator's rule) whose repeats make up 30% of the text. "The man in" three times
    is how people tell several men apart ("the man in black pushed the man in white"); a clause said three times
    is a loop. A phrase the span's captions repeat as often is theirs, not a loop of the writer's (a chain, which
    quotes them in turn, may say it once more than all of them together). Times are not words."""
    flags = []
    source = [words(_without_times(t)) for t in evidence.captions + evidence.summaries]
    for text in texts.texts:
        w = words(_without_times(text.text))
        trigrams = Counter(g for g in zip(w, w[1:], w[2:]) if sum(x not in FUNCTION_WORDS for x in g) >= 2)
        fivegrams = Counter(zip(w, w[1:], w[2:], w[3:], w[4:]))
        loop = fivegrams.most_common(1)[0] if fivegrams else None
        top = trigrams.most_common(1)[0] if trigrams else None
        if loop and loop[1] >= 3:
            top = loop
        elif not (top and top[1] >= 3 and 3 * top[1] >= 0.3 * len(w)):
            continue
        # a chain quotes the captions one after another and names what they show once more (its scene, its
        # cause): what they say between them, and once again, is theirs
        counts = [_occurrences(top[0], x) for x in source]
        seen = sum(counts) + 1 if text.target.startswith("chain:") else max(counts, default=0)
        if seen >= top[1]:
            continue
        flags.append(Flag("repeated_phrase", "error", text.target, float(top[1]), f"'{' '.join(top[0])}' x{top[1]}"))
    return flags


_TIME = re.compile(r"\d+(?:\.\d+)?\s*(?:s|secs?|seconds?|mins?|minutes?)\b", re.I)


def _without_times(text: str) -> str:
    """A text with its times taken out: "from 5.0 s to 9.0 s and from 12.0 s to ..." is not a looping phrase."""
    return _TIME.sub(" ", text)


def _occurrences(phrase: tuple[str, ...], w: list[str]) -> int:
    n = len(phrase)
    return sum(1 for i in range(len(w) - n + 1) if tuple(w[i:i + n]) == phrase)


def dominant_word(texts: ItemTexts, evidence: Evidence) -> list[Flag]:
    """One word making up at least half of a text of six words or more."""
    flags = []
    for text in texts.texts:
        w = words(text.text)
        if len(w) >= 6 and (top := Counter(w).most_common(1)[0])[1] * 2 >= len(w):
            flags.append(Flag("dominant_word", "error", text.target, round(top[1] / len(w), 3),
                              f"'{top[0]}' is {top[1]} of {len(w)} words"))
    return flags


VARIETY_WINDOW = 40


def low_word_variety(texts: ItemTexts, evidence: Evidence) -> list[Flag]:
    """Fewer than 40% distinct words (Cosmos Curator's ratio) in a text of 20 words or more, or in some 40-word
    stretch of a longer one (any long text repeats its common words; a loop repeats everything). A warning:
    a plain description of several similar clips can be repetitive and still true."""
    flags = []
    for text in texts.texts:
        w = words(text.text)
        if len(w) < 20:
            continue
        windows = [w] if len(w) <= VARIETY_WINDOW else \
            [w[i:i + VARIETY_WINDOW] for i in range(0, len(w) - VARIETY_WINDOW + 1, VARIETY_WINDOW // 2)]
        ratio = min(len(set(x)) / len(x) for x in windows)
        if ratio < 0.4:
            flags.append(Flag("low_word_variety", "warn", text.target, round(ratio, 3),
                              f"{round(100 * ratio)}% distinct words in a {min(len(w), VARIETY_WINDOW)}-word stretch"))
    return flags


def length_outlier(texts: ItemTexts, evidence: Evidence) -> list[Flag]:
    """A text far outside its level's and field's usual length (HIVAU-70k's ranges, in words): a warning
    outside the range, an error beyond twice its ends."""
    flags = []
    for text in texts.texts:
        field_name = text.target.split(":")[0]
        bounds = LENGTH_RANGES.get((texts.level, field_name))
        n = len(words(text.text))
        if bounds is None or n == 0:
            continue
        low, high = bounds
        if n < low or n > high:
            severity = "error" if n < low / 2 or n > 2 * high else "warn"
            flags.append(Flag("length_outlier", severity, text.target, float(n),
                              f"{n} words (usual {low}-{high})"))
    return flags


def _similar(a: str, b: str) -> float:
    """How alike two texts are: the larger of their word sets' Jaccard similarity and their word sequences'
    matching ratio (one word changed in a seven-word caption is 0.86)."""
    x, y = words(a), words(b)
    if not x or not y:
        return 0.0
    jaccard = len(set(x) & set(y)) / len(set(x) | set(y))
    return max(jaccard, SequenceMatcher(None, x, y, autojunk=False).ratio())


NEAR_DUPLICATE = 0.8


def near_duplicate(texts: ItemTexts, evidence: Evidence) -> list[Flag]:
    """A caption (near) identical to the previous clip's in the same event; 5W2H answers that repeat each
    other (answers of five words or more, so "The captions do not say." may recur)."""
    flags = []
    caption = texts.get("caption")
    if caption and caption.text.strip():
        for other in evidence.neighbours:
            if (score := _similar(caption.text, other)) >= NEAR_DUPLICATE:
                flags.append(Flag("near_duplicate", "warn" if score < 1 else "error", "caption", round(score, 3),
                                  f"same as the previous clip's: '{other[:120]}'"))
    answers = [t for t in texts.texts if t.target.startswith("qa:") and len(words(t.text)) >= 5]
    for i, a in enumerate(answers):
        for b in answers[:i]:
            if (score := _similar(a.text, b.text)) >= NEAR_DUPLICATE:
                flags.append(Flag("near_duplicate", "warn", a.target, round(score, 3),
                                  f"repeats the {b.target.split(':')[1]} answer: '{b.text[:120]}'"))
                break
    return flags


def event_omitted(texts: ItemTexts, evidence: Evidence) -> list[Flag]:
    """A video summary that leaves out one of the video's anomalous events: neither its class nor two of the
    things its captions saw nor its time appears in the summary."""
    if texts.level != "video" or not evidence.events:
        return []
    body = " ".join(t.text for t in _summary_texts(texts) if t.target in ("summary", "description"))
    if not body.strip():
        return []
    said = lemmas(body)
    named = {key for key, _ in _names_classes(body)}
    times = [t.seconds for t in times_in(body)]
    others = [e for e in evidence.events]
    missed = []
    for event in evidence.events:
        seen = {n for c in event.captions for n, _ in concrete_nouns(c)}
        elsewhere = {n for e in others if e is not event for c in e.captions for n, _ in concrete_nouns(c)}
        own = seen - elsewhere if len(evidence.events) > 1 else seen
        shared = {n for n in (own or seen) if _supported(n, said)}
        by_class = bool({class_key(lb) for lb in event.labels} & named)
        by_time = any(event.start_s - 2 <= t <= event.end_s + 2 for t in times)
        if not (by_time or len(shared) >= 2 or (by_class and (shared or len(evidence.events) == 1))):
            missed.append(event)
    if not missed:
        return []
    return [Flag("event_omitted", "error", "summary", float(len(missed)),
                 "; ".join(f"{e.event_id} ({', '.join(e.labels)}, {e.start_s:.1f}-{e.end_s:.1f} s)" for e in missed))]


CheckFn = Callable[[ItemTexts, Evidence], list[Flag]]
CHECKS: tuple[CheckFn, ...] = (unsupported_content, label_contradiction, time_outside_span, missing_part,
                                repeated_phrase, dominant_word, low_word_variety, length_outlier, near_duplicate,
                                event_omitted)
CHECK_NAMES: tuple[str, ...] = tuple(c.__name__ for c in CHECKS)
# kinds of defect, for the benchmark's recall table and the README: each names the checks that catch it
DEFECT_KINDS = {"grounding": ("unsupported_content",), "label": ("label_contradiction",),
                "times": ("time_outside_span",), "missing": ("missing_part",),
                "degenerate": ("repeated_phrase", "dominant_word", "low_word_variety", "length_outlier"),
                "duplicate": ("near_duplicate",), "omission": ("event_omitted",)}


def run_checks(texts: ItemTexts, evidence: Evidence, checks: Iterable[CheckFn] = CHECKS) -> list[Flag]:
    return [flag for check in checks for flag in check(texts, evidence)]
