"""The review queue: a seeded random audit sample first, then the drafts most likely wrong: those with failed draft
checks (errors, then warnings), then the coarse signals (no draft, an extractive draft, text that never names what
the label says happens, text far shorter or longer than its level's median)."""

from __future__ import annotations

import random
import re
import statistics
from dataclasses import dataclass, field

from hivau.tasks.text.vocabulary import ANOMALY_WORDS, LABEL_WORDS

WORD = re.compile(r"[a-z]+")


@dataclass
class QueueItem:
    """What the queue needs of one review task."""

    key: str
    text: str
    labels: list[str]
    generators: list[str]  # backends of the drafts shown
    errors: int = 0  # failed checks of the task's drafts, at error
    warnings: int = 0
    checks: list[str] = field(default_factory=list)  # their names
    risk: float = 0.0
    reasons: list[str] = field(default_factory=list)


def _words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


def label_disagrees(text: str, labels: list[str]) -> bool:
    """A draft that never names what the label says happens, or names an anomaly in a normal video."""
    words = _words(text)
    if not words:
        return False
    anomalous = [label for label in labels if label.lower() != "normal"]
    if not anomalous:
        return bool(words & ANOMALY_WORDS)
    expected = set().union(*(LABEL_WORDS.get(re.sub(r"[^a-z]", "", label.lower()), _words(label))
                             for label in anomalous))
    return not words & expected


def score_risk(items: list[QueueItem]) -> None:
    """How likely each draft is wrong, from signals every draft has (no model needed):
    no draft at all, a draft from the extractive fallback, text that disagrees with the label, and text far
    shorter or longer than its level's usual."""
    lengths = [len(it.text.split()) for it in items if it.text]
    median = statistics.median(lengths) if lengths else 0
    for it in items:
        n = len(it.text.split())
        signals = {"no_draft": 1.0 if not it.text else 0.0,
                   "extractive_draft": 0.3 if "extractive" in it.generators else 0.0,
                   "label_disagrees": 0.4 if label_disagrees(it.text, it.labels) else 0.0,
                   "too_short": 0.2 if it.text and n < max(3, 0.3 * median) else 0.0,
                   "too_long": 0.2 if median and n > 3 * median else 0.0}
        it.risk = round(sum(signals.values()) + 2.0 * it.errors + 0.5 * it.warnings, 3)
        it.reasons = list(dict.fromkeys(it.checks)) + [name for name, value in signals.items() if value]


def auditable(item: QueueItem) -> bool:
    """A machine draft: something to accept, edit or reject (not an empty editor, not the annotation file's
    own words)."""
    return bool(item.text) and any(g != "human" for g in item.generators)


def queue_order(items: list[QueueItem], audit_size: int, seed: str) -> list[tuple[QueueItem, int, bool]]:
    """(item, queue position from 1, in the audit sample): a seeded random sample of the machine drafts
    first (random, so that its outcomes estimate all drafts' and the checks' precision and recall); then the rest,
    those with error flags first, then by risk."""
    score_risk(items)
    rng = random.Random(seed)
    order = sorted(range(len(items)), key=lambda i: items[i].key)  # the sample does not depend on input order
    drafts = [i for i in order if auditable(items[i])]
    audit = set(rng.sample(drafts, min(audit_size, len(drafts))))
    rest = sorted((i for i in order if i not in audit), key=lambda i: (-items[i].errors, -items[i].risk, items[i].key))
    ranked = sorted(audit, key=lambda i: items[i].key) + rest
    return [(items[i], pos, i in audit) for pos, i in enumerate(ranked, start=1)]
