"""Verifiable answers scored: the completion parser, per-task scorers, TRL GRPO rewards and VAU-R1's metrics."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from hivau.schemas.classes import CLASS_NAMES
from hivau.schemas.classes import class_key as schema_class_key
from hivau.schemas.records import CHOICE_LETTERS, NO_SPAN, VAU_R1_COLUMNS

IOU_THRESHOLDS = (0.3, 0.5, 0.7)
NORMAL = "normal"  # the class key of a normal item

# a time: seconds ("12.5", "12.5s"), mm:ss or hh:mm:ss (fractions allowed on the last field)
_TIME = r"-?\d+(?:\.\d+)?(?::\d{1,2}(?:\.\d+)?){0,2}"
_UNIT = r"(?:\s*(?:s|sec|secs|seconds?)\b)?"
_SPAN = re.compile(rf"[\[(]\s*({_TIME}){_UNIT}\s*(?:,|to|–)\s*({_TIME}){_UNIT}\s*[\])]", re.I)
_TAG = {name: (re.compile(rf"<{name}>", re.I), re.compile(rf"</{name}>", re.I)) for name in ("think", "answer", "glue")}
# VAU-R1's format (grpo_qa.py) with the glue its grounding trainer (grpo_gqa.py) adds after the answer; here the
# glue may also sit before the answer or inside it
_WELL_FORMED = re.compile(r"<think>.*?</think>\s*(?:<glue>.*?</glue>\s*)?<answer>.*?</answer>(?:\s*<glue>.*?</glue>)?",
                          re.S | re.I)


@dataclass(frozen=True)
class Parsed:
    """A completion read: its reasoning, its answer (the whole text when untagged), the `<glue>[s, e]</glue>` span
    in seconds (None when absent or unreadable) and whether it is a well-formed tagged answer."""

    think: Optional[str]
    answer: str
    glue: Optional[tuple[float, float]]
    well_formed: bool

    @property
    def span(self) -> Optional[tuple[float, float]]:
        """The predicted time span: the glue's, else the first "[s, e]" the answer writes."""
        return self.glue if self.glue is not None else find_span(self.answer)


@dataclass(frozen=True)
class VauReference:
    """A verifiable task as scoring needs it (a `VauTaskRow` serves as one too)."""

    id: str
    task: str
    solution: str
    options: tuple[str, ...] = ()


def seconds(text: str) -> float:
    """"12.5" / "12.5s" -> 12.5, "01:05" -> 65.0, "1:02:03.5" -> 3723.5."""
    value = re.sub(r"[^\d:.\-]", "", text)
    sign = -1.0 if value.startswith("-") else 1.0
    total = 0.0
    for part in value.lstrip("-").split(":"):
        total = total * 60 + float(part)
    return sign * total


def find_span(text: str) -> Optional[tuple[float, float]]:
    """The first "[start, end]" (or "(start, end)", "[s to e]") in a text, in seconds; None if there is none."""
    m = _SPAN.search(text or "")
    return (seconds(m.group(1)), seconds(m.group(2))) if m else None


def _between(text: str, name: str) -> Optional[str]:
    """The text inside the first <name>...</name>; when only opened, all after the opening tag."""
    start, end = _TAG[name]
    m = start.search(text)
    if not m:
        return None
    close = end.search(text, m.end())
    return text[m.end():close.start() if close else len(text)]


def _strip_tags(text: str) -> str:
    return re.sub(r"</?(?:think|answer|glue)>", " ", text, flags=re.I).strip()


def parse_completion(text: str) -> Parsed:
    """Read a completion: tagged (`<think>..</think><answer>..</answer>`, a `<glue>[s, e]</glue>` beside or inside
    the answer) or plain (no tags: the whole text is the answer). Well-formed: the whole text is think then answer,
    each tag once, any glue a readable span with start <= end (or [-1, -1])."""
    text = (text or "").strip()
    think = _between(text, "think")
    answer = _between(text, "answer")
    glue_text = _between(text, "glue")
    if answer is None:  # no answer tag: what follows the reasoning; nothing if it never ends; else the whole text
        closed = _TAG["think"][1].search(text)
        answer = text[closed.end():] if closed else "" if think is not None else text
    glue = None
    if glue_text is not None:
        m = _SPAN.fullmatch(glue_text.strip())
        glue = (seconds(m.group(1)), seconds(m.group(2))) if m else None
    counts = {name: (len(o.findall(text)), len(c.findall(text))) for name, (o, c) in _TAG.items()}
    well_formed = (bool(_WELL_FORMED.fullmatch(text)) and counts["think"] == counts["answer"] == (1, 1)
                   and counts["glue"] in ((0, 0), (1, 1))
                   and (glue_text is None or (glue is not None and (glue == NO_SPAN or 0 <= glue[0] <= glue[1]))))
    answer = _strip_tags(re.sub(r"<glue>.*?(?:</glue>|$)", " ", answer, flags=re.S | re.I))
    return Parsed(think.strip() if think is not None else None, answer, glue, well_formed)


def _parsed(completion) -> Parsed:
    return completion if isinstance(completion, Parsed) else parse_completion(completion)


# --- multiple choice --------------------------------------------------------------------------------------------

def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", (text or "").lower()))


# "Option B", "choice (b)", "the answer is B" (a lower-case letter after "answer" is an article: "the answer is a man")
_NAMED_LETTER = re.compile(r"\b(?:option|choice|letter)\s*[:\-]?\s*\(?([A-Da-d])\)?(?![\w'])"
                           r"|\banswer(?:\s+is)?\s*[:\-]?\s*\(?(?-i:([A-D]))\)?(?![\w'])", re.I)


# words after a lone "A" that show it is a letter, not an article
_NOT_NOUNS = frozenset("is or and as was because fits matches seems best would since looks describes".split())


def choice_letter(answer: str, options: Sequence[str] = ()) -> Optional[str]:
    """The letter A-D an answer picks: "B", "(b)", "B. a man ...", an option's exact text, "Option B" / "the answer
    is B" (the last so named), else the one lone capital letter of a sentence. None when there is no letter, or
    several lone ones ("A or B")."""
    text = (answer or "").strip().strip("*`'\"").strip()
    letters = "".join(CHOICE_LETTERS)
    if m := re.fullmatch(rf"\(?([{letters}])\)?[.:)]?", text, re.I):
        return m.group(1).upper()
    if m := re.match(rf"(?:\(([{letters}])\)|([{letters}])[.:)])(?:\s|$)", text):  # "B. a man", "(B) a man"
        return m.group(1) or m.group(2)
    by_text = [CHOICE_LETTERS[i] for i, o in enumerate(options[:len(CHOICE_LETTERS)]) if _words(o) == _words(text)]
    if len(by_text) == 1 and _words(text):
        return by_text[0]
    named = [m.group(1) or m.group(2) for m in _NAMED_LETTER.finditer(text)]
    if named:
        return named[-1].upper()
    # lone capitals, "A" as an article ("A man runs", not "A is right" / "A or B") left out
    lone = set()
    for m in re.finditer(rf"(?<![\w'])([{letters}])(?![\w'])", text):
        after = re.match(r"\s+([a-z]+)", text[m.end():])
        if not (m.group(1) == "A" and after and after.group(1) not in _NOT_NOUNS):
            lone.add(m.group(1))
    return lone.pop() if len(lone) == 1 else None


def choice_score(completion, solution: str, options: Sequence[str] = ()) -> float:
    """1.0 when the answer picks the solution's letter."""
    return float(choice_letter(_parsed(completion).answer, options or ()) == solution.strip().upper())


# --- classification ---------------------------------------------------------------------------------------------

# answers that mean "no anomaly" (letters only); the classes and their aliases are schemas/classes.py's
NORMAL_FORMS = frozenset("normal normalevent normalevents normalvideo noanomaly noanomalies noanomalydetected "
                         "nonanomaly nothingabnormal".split())
KNOWN_CLASSES = tuple(CLASS_NAMES)


def class_key(label: str) -> str:
    """"Road Accidents", "RoadAccidents", "road_accident", "Traffic accident" -> "roadaccidents";
    "Normal", "normal event", "No anomaly" -> "normal"; anything else: its lower-case letters."""
    letters = re.sub(r"[^a-z]", "", (label or "").lower())
    return NORMAL if letters in NORMAL_FORMS else schema_class_key(label)


def predicted_class(answer: str, classes: Sequence[str] = ()) -> Optional[str]:
    """The class key an answer names: the whole answer's when it is a class (of `classes`, the known ones or an
    alias), else the first class its words name, one to three words long ("It is a road accident." ->
    "roadaccidents"); None if none."""
    known = {class_key(c) for c in classes} | set(KNOWN_CLASSES) | {NORMAL}
    if (whole := class_key(answer)) in known:
        return whole
    words = re.findall(r"[a-z]+", (answer or "").lower())
    for i in range(len(words)):
        for length in (3, 2, 1):  # the longest name at the first place that has one
            if i + length <= len(words) and (key := class_key("".join(words[i:i + length]))) in known:
                return key
    return None


def classify_score(completion, solution: str) -> float:
    """1.0 when the answer names the solution's class (normalised: case, spaces, aliases, "no anomaly" = Normal)."""
    return float(predicted_class(_parsed(completion).answer, [solution]) == class_key(solution))


# --- anomaly yes / no -------------------------------------------------------------------------------------------

_NEGATIVE = re.compile(r"\b(?:no|not|without|nothing|never)\b(?:\s+\w+){0,3}?\s+(?:anomal\w*|abnormal\w*|unusual)"
                       r"|\bnormal\b", re.I)


def yes_no(answer: str) -> Optional[str]:
    """"yes" / "no" an answer gives to "is there an anomaly?": a leading yes / no, "there is no anomaly",
    "normal" (no), "there is an anomaly", "abnormal" (yes); None when it says neither."""
    text = (answer or "").strip().lower()
    if m := re.match(r"[\W_]*(yes|yeah|yep|true|no|nope|false)\b", text):
        return "yes" if m.group(1) in ("yes", "yeah", "yep", "true") else "no"
    if re.search(r"\bnot\s+(?:\w+\s+)?normal\b", text):
        return "yes"
    if _NEGATIVE.search(text):
        return "no"
    if re.search(r"\b(?:anomal\w*|abnormal\w*)", text):
        return "yes"
    return None


def detect_score(completion, solution: str) -> float:
    """1.0 when the answer's yes / no is the solution's."""
    return float(yes_no(_parsed(completion).answer) == solution.strip().lower())


# --- temporal grounding -----------------------------------------------------------------------------------------

def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Temporal IoU of two spans; an empty or reversed span (start >= end) scores 0, as in VAU-R1's evaluation."""
    if a[1] <= a[0] or b[1] <= b[0]:
        return 0.0
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def reference_span(solution: str) -> tuple[float, float]:
    span = find_span(solution)
    if span is None:
        raise ValueError(f"a grounding solution must be \"[start, end]\", got {solution!r}")
    return span


def span_score(pred: Optional[tuple[float, float]], truth: tuple[float, float]) -> float:
    """A predicted span against the true one: IoU; a normal video ([-1, -1]): 1.0 for [-1, -1], else 0.0."""
    if truth == NO_SPAN:
        return float(pred == NO_SPAN)
    return 0.0 if pred is None or pred == NO_SPAN else iou(pred, truth)


def grounding_score(completion, solution: str) -> float:
    """The predicted span (glue, else the answer's "[s, e]") against the solution's: `span_score`."""
    return span_score(_parsed(completion).span, reference_span(solution))


def score(task: str, completion, solution: str, options: Sequence[str] = ()) -> float:
    """A completion's score in [0, 1] on one verifiable task."""
    if task == "choice":
        return choice_score(completion, solution, options)
    if task == "grounding":
        return grounding_score(completion, solution)
    if task == "classify":
        return classify_score(completion, solution)
    if task == "detect":
        return detect_score(completion, solution)
    raise ValueError(f"unknown task {task!r}")


# --- TRL GRPOTrainer reward functions ---------------------------------------------------------------------------
# GRPOTrainer (trl 1.16, `_calculate_rewards`) calls reward_func(prompts=, completions=, completion_ids=,
# **reward_kwargs): every dataset column but "prompt" / "completion" / "completion_ids" as a list (so `task`,
# `solution`, `options`), plus trainer_state, log_extra, log_metric. Completions are strings, or for conversational
# data lists of messages. A None reward means "not applicable" (TRL makes it NaN and leaves it out of that row's sum).

def completion_text(completion) -> str:
    """A completion as text: a string, or (conversational data) the last assistant message's content."""
    if isinstance(completion, str):
        return completion
    messages = [m for m in completion if m.get("role", "assistant") == "assistant"] or list(completion)
    content = messages[-1].get("content", "") if messages else ""
    if isinstance(content, list):  # typed parts: [{"type": "text", "text": ...}, ...]
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
    return content or ""


def _column(values, n: int) -> list:
    return list(values) if values is not None else [None] * n


def format_reward(prompts, completions, completion_ids=None, task=None, **kwargs) -> list[float]:
    """1.0 for a well-formed tagged completion (grounding rows: with a readable span, in the glue or the answer)."""
    out = []
    for completion, t in zip(completions, _column(task, len(completions))):
        p = parse_completion(completion_text(completion))
        out.append(float(p.well_formed and (t != "grounding" or p.span is not None)))
    return out


def accuracy_reward(prompts, completions, completion_ids=None, *, task, solution, options=None,
                    **kwargs) -> list[Optional[float]]:
    """choice / classify / detect rows: 1.0 for the right answer, else 0.0; grounding rows: None (`iou_reward`'s)."""
    out: list[Optional[float]] = []
    for completion, t, sol, opts in zip(completions, task, solution, _column(options, len(completions))):
        out.append(None if t == "grounding" else score(t, completion_text(completion), sol, opts or ()))
    return out


def iou_reward(prompts, completions, completion_ids=None, *, solution, task=None, **kwargs) -> list[Optional[float]]:
    """grounding rows: the IoU of the predicted span with the solution (normal videos: [-1, -1] or nothing);
    other rows: None."""
    out: list[Optional[float]] = []
    for completion, t, sol in zip(completions, _column(task, len(completions)), solution):
        grounding = t == "grounding" or (t is None and find_span(sol) is not None)
        out.append(grounding_score(completion_text(completion), sol) if grounding else None)
    return out


# --- evaluation -------------------------------------------------------------------------------------------------

def _share(flags) -> Optional[float]:
    flags = list(flags)
    return float(np.mean(flags)) if flags else None


def _f1(tp: int, fp: int, fn: int) -> Optional[float]:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None


def _classify_metrics(pairs: list[tuple[str, Optional[str]]]) -> dict:
    """pairs of (true key, predicted key or None): accuracy, macro-F1 over the true classes, VAU-R1's binary
    (normal / anomalous) accuracy of the class answer (an unreadable answer is wrong either way)."""
    classes = sorted({t for t, _ in pairs})
    per_class = {}
    for c in classes:
        tp = sum(t == c and p == c for t, p in pairs)
        fp = sum(t != c and p == c for t, p in pairs)
        fn = sum(t == c and p != c for t, p in pairs)
        per_class[c] = {"support": tp + fn, "precision": tp / (tp + fp) if tp + fp else 0.0,
                        "recall": tp / (tp + fn), "f1": _f1(tp, fp, fn) or 0.0}
    return {"n": len(pairs), "accuracy": _share(t == p for t, p in pairs),
            "macro_f1": float(np.mean([m["f1"] for m in per_class.values()])) if per_class else None,
            "binary_accuracy": _share(p is not None and (t == NORMAL) == (p == NORMAL) for t, p in pairs),
            "classes": per_class}


def _detect_metrics(pairs: list[tuple[str, Optional[str]]]) -> dict:
    tp = sum(t == "yes" and p == "yes" for t, p in pairs)
    fp = sum(t != "yes" and p == "yes" for t, p in pairs)
    fn = sum(t == "yes" and p != "yes" for t, p in pairs)
    return {"n": len(pairs), "accuracy": _share(t == p for t, p in pairs),
            "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
            "f1": _f1(tp, fp, fn)}


def _grounding_metrics(pairs: list[tuple[tuple[float, float], Parsed]]) -> dict:
    """VAU-R1's evaluation_tag.py: mIoU and R@0.3/0.5/0.7 (IoU >= threshold) over the anomalous videos; normal
    videos apart: the share answering [-1, -1]."""
    ious = [span_score(p.span, t) for t, p in pairs if t != NO_SPAN]
    normal = [p.span == NO_SPAN for t, p in pairs if t == NO_SPAN]
    anomalous = {"n": len(ious), "mIoU": _share(ious)}
    anomalous.update({f"R@{k}": _share(v >= k for v in ious) for k in IOU_THRESHOLDS})
    return {"n": len(pairs), "anomalous": anomalous, "normal": {"n": len(normal), "no_span": _share(normal)}}


def vau_metrics(rows, answers) -> dict:
    """Scores of predicted texts on verifiable tasks: `rows` with id / task / solution (/ options), `answers` a
    mapping id -> text ("" where missing) or a list aligned with `rows`. Fractions in [0, 1]; a task with no rows
    is left out."""
    rows = list(rows)
    if not isinstance(answers, Mapping):
        answers = {r.id: a for r, a in zip(rows, answers, strict=True)}
    parsed = {r.id: parse_completion(answers.get(r.id) or "") for r in rows}
    by_task: dict[str, list] = {}
    for r in rows:
        by_task.setdefault(r.task, []).append(r)
    out: dict = {"n": len(rows), "counts": {t: len(v) for t, v in sorted(by_task.items())},
                 "format": {"n": len(rows), "well_formed": _share(parsed[r.id].well_formed for r in rows)}}
    if rows_ := by_task.get("choice"):
        out["choice"] = {"n": len(rows_), "accuracy": _share(
            choice_score(parsed[r.id], r.solution, tuple(r.options or ())) for r in rows_)}
    if rows_ := by_task.get("classify"):
        classes = sorted({r.solution for r in rows_})
        out["classify"] = _classify_metrics([(class_key(r.solution), predicted_class(parsed[r.id].answer, classes))
                                             for r in rows_])
    if rows_ := by_task.get("detect"):
        out["detect"] = _detect_metrics([(r.solution.strip().lower(), yes_no(parsed[r.id].answer)) for r in rows_])
    if rows_ := by_task.get("grounding"):
        out["grounding"] = _grounding_metrics([(reference_span(r.solution), parsed[r.id]) for r in rows_])
    return out


# --- VAU-R1's released test CSVs --------------------------------------------------------------------------------

def _given(value: Optional[str]) -> bool:
    return value is not None and value.strip() not in ("", "-1", "-1.0")


def read_vau_r1_csv(path: str | Path) -> list[VauReference]:
    """VAU-R1's test CSVs (`annotations/test_{ucf_crime,msad,ecva}.csv`) as references, per row (ids name the
    video as the CSV does, with its ".mp4"):

    - `"{Video Name}:choice"` when the options are given (not -1): the solution is `Correct Option`'s letter
      (MSAD writes some as "D. Green trash bin ...");
    - `"{Video Name}:grounding"` when `Start Time` / `End Time` are given: "0.0, 0.0" is a normal video (VAU-R1's
      evaluation_tag.py skips those for mIoU), answered [-1, -1]; "-1, -1" (anomalous videos without annotated
      times) gives no grounding reference;
    - `"{Video Name}:classify"` when `Anomaly Class` is given (not -1): the class, as evaluation_cls.py scores it.
    """
    out, seen = [], set()
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in VAU_R1_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not a VAU-R1 test CSV (missing {', '.join(missing)})")
        for number, row in enumerate(reader, 2):
            video = row["Video Name"].strip()
            if video in seen:
                raise ValueError(f"{path}:{number}: video {video} appears twice")
            seen.add(video)
            options = tuple(row[f"Option {i}"].strip() for i in range(1, 5))
            if all(_given(o) for o in options) and _given(row["Correct Option"]):
                correct = row["Correct Option"].strip()
                letter = choice_letter(correct, options)
                if letter is None:
                    raise ValueError(f"{path}:{number}: Correct Option {correct!r} names no option")
                out.append(VauReference(f"{video}:choice", "choice", letter, options))
            if _given(row["Start Time"]) and _given(row["End Time"]):
                try:
                    start, end = seconds(row["Start Time"]), seconds(row["End Time"])
                except ValueError:
                    raise ValueError(f"{path}:{number}: times {row['Start Time']!r}, {row['End Time']!r} are no "
                                     "seconds") from None
                span = NO_SPAN if start == end == 0 else (start, end)
                out.append(VauReference(f"{video}:grounding", "grounding", f"[{span[0]}, {span[1]}]"))
            if _given(row["Anomaly Class"]):
                out.append(VauReference(f"{video}:classify", "classify", row["Anomaly Class"].strip()))
    return out
