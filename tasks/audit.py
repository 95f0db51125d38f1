"""The review queue (a random audit sample first, then the drafts most likely wrong) and the audit figures
a release reports: acceptance per level and generator with a 95% Wilson interval, and how many unreviewed
drafts would be rejected at that rate."""

from __future__ import annotations

import math
import random
import re
import statistics
from dataclasses import dataclass, field
from typing import Iterable, Optional

from hivau.schemas.item import Tables
from hivau.schemas.records import ReviewRecord

# words that say "something abnormal happens" in a draft of a video labelled normal
ANOMALY_WORDS = frozenset(
    "abuse accident arrest arson assault attack attacks blood break breaks burglary burn burning collide collides "
    "collision crash crashes explode explodes explosion fall falls fight fighting fights fire flee flees gun hit "
    "hits injured kick kicks knife punch punches rob robbery robs shoot shooting shoplifting smash steal stealing "
    "steals stab struggle theft thief vandalism violence violent weapon".split())
# label -> words a draft of it is expected to use (any one); labels not listed use their own words
LABEL_WORDS = {
    "abuse": {"abuse", "hit", "hits", "beat", "beats", "kick", "kicks", "push", "pushes", "slap", "slaps"},
    "arrest": {"arrest", "arrests", "police", "officer", "officers", "handcuff", "handcuffs"},
    "arson": {"arson", "fire", "burn", "burns", "burning", "flame", "flames"},
    "assault": {"assault", "attack", "attacks", "hit", "hits", "punch", "punches", "kick", "kicks", "beat"},
    "burglary": {"burglary", "break", "breaks", "steal", "steals", "enter", "enters", "thief"},
    "explosion": {"explosion", "explode", "explodes", "blast", "smoke", "fire"},
    "fighting": {"fight", "fights", "fighting", "punch", "punches", "hit", "hits", "kick", "kicks", "struggle"},
    "roadaccidents": {"accident", "crash", "crashes", "collide", "collides", "collision", "hit", "hits"},
    "robbery": {"robbery", "rob", "robs", "gun", "weapon", "threaten", "threatens", "steal", "steals"},
    "shooting": {"shoot", "shoots", "shooting", "gun", "fire", "fires", "shot"},
    "shoplifting": {"shoplifting", "steal", "steals", "hide", "hides", "pocket", "pockets", "conceal"},
    "stealing": {"steal", "steals", "stealing", "take", "takes", "thief", "theft"},
    "vandalism": {"vandalism", "smash", "smashes", "break", "breaks", "damage", "damages", "kick", "kicks"},
}
WORD = re.compile(r"[a-z]+")


@dataclass
class QueueItem:
    """What the queue needs of one review task."""

    key: str
    text: str
    labels: list[str]
    generators: list[str]  # backends of the drafts shown
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
        it.risk = round(sum(signals.values()), 3)
        it.reasons = [name for name, value in signals.items() if value]


def auditable(item: QueueItem) -> bool:
    """A machine draft: something to accept, edit or reject (not an empty editor, not the annotation file's
    own words)."""
    return bool(item.text) and any(g != "human" for g in item.generators)


def queue_order(items: list[QueueItem], audit_size: int, seed: str) -> list[tuple[QueueItem, int, bool]]:
    """(item, queue position from 1, in the audit sample): a seeded random sample of the machine drafts
    first, so that its acceptance rate estimates theirs; then the rest, riskiest first."""
    score_risk(items)
    rng = random.Random(seed)
    order = sorted(range(len(items)), key=lambda i: items[i].key)  # the sample does not depend on input order
    drafts = [i for i in order if auditable(items[i])]
    audit = set(rng.sample(drafts, min(audit_size, len(drafts))))
    rest = sorted((i for i in order if i not in audit), key=lambda i: (-items[i].risk, items[i].key))
    ranked = sorted(audit, key=lambda i: items[i].key) + rest
    return [(items[i], pos, i in audit) for pos, i in enumerate(ranked, start=1)]


# ---------------------------------------------------------------- audit figures
def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% for z = 1.96); (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class AuditRow:
    level: str
    generator: str
    audited: int
    accepted: int  # taken as drafted
    edited: int
    rejected: int
    unreviewed: int  # drafts of this level and generator no person has seen

    def as_dict(self) -> dict:
        low, high = wilson_interval(self.accepted, self.audited)
        r_low, r_high = wilson_interval(self.rejected, self.audited)
        rate = self.rejected / self.audited if self.audited else None
        return {"level": self.level, "generator": self.generator, "audited": self.audited,
                "accepted": self.accepted, "edited": self.edited, "rejected": self.rejected,
                "acceptance_rate": round(self.accepted / self.audited, 4) if self.audited else None,
                "acceptance_ci95": [round(low, 4), round(high, 4)], "unreviewed_drafts": self.unreviewed,
                "est_rejected_unreviewed": None if rate is None else round(rate * self.unreviewed, 1),
                "est_rejected_unreviewed_ci95": [round(r_low * self.unreviewed, 1), round(r_high * self.unreviewed, 1)]}


def _main_texts(tables: Tables) -> dict[str, tuple[str, str, str, Optional[int]]]:
    """item id -> (level, generator backend, provenance, annotation) of its main text: a clip's caption, an
    event's or video's summary."""
    out = {c.item_id: ("clip", c.generator.backend, c.provenance, c.annotation_id) for c in tables.captions}
    out.update({s.item_id: (s.level, s.generator.backend, s.provenance, s.annotation_id) for s in tables.summaries})
    return out


def audit_table(tables: Tables, reviews: Iterable[ReviewRecord]) -> list[dict]:
    """Per level and generator: the audit sample's outcomes and what they say about the unreviewed drafts.

    An item counts once, by its main text: accepted as drafted, edited, or rejected (the reviewer's verdict).
    """
    audited_annotations = {r.annotation_id for r in reviews if r.audit}
    rows: dict[tuple[str, str], AuditRow] = {}
    for item_id, (level, generator, provenance, annotation_id) in _main_texts(tables).items():
        if generator == "human" and provenance == "human":
            continue  # the annotation file's own words: not a draft
        row = rows.setdefault((level, generator), AuditRow(level, generator, 0, 0, 0, 0, 0))
        if provenance == "auto_draft":
            row.unreviewed += 1
        elif annotation_id in audited_annotations and provenance in ("accepted", "edited", "rejected"):
            row.audited += 1
            setattr(row, provenance, getattr(row, provenance) + 1)
    return [rows[k].as_dict() for k in sorted(rows)]


def audit_markdown(table: list[dict], rule: Optional[dict] = None) -> str:
    """The dataset card's audit section."""
    lines = ["## Audited quality", "",
             "A seeded random sample of each level's review queue was reviewed first; its outcomes estimate the "
             "drafts nobody reviewed. Acceptance = taken as drafted; intervals are 95% Wilson score intervals.", ""]
    if rule:
        lines += [f"Annotation rule when several reviewers annotated one item: `{rule.get('rule')}`"
                  + (f" (precedence {rule.get('precedence')})" if rule.get("precedence") else "") + ".", ""]
    lines += ["| level | generator | audited | accepted | edited | rejected | acceptance (95% CI) | unreviewed drafts "
              "| est. rejected among them (95% CI) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        rate = "n/a" if r["acceptance_rate"] is None else \
            f"{r['acceptance_rate']:.1%} ({r['acceptance_ci95'][0]:.1%}-{r['acceptance_ci95'][1]:.1%})"
        low, high = r["est_rejected_unreviewed_ci95"]
        est = "n/a" if r["est_rejected_unreviewed"] is None else f"{r['est_rejected_unreviewed']} ({low}-{high})"
        lines.append(f"| {r['level']} | {r['generator']} | {r['audited']} | {r['accepted']} | {r['edited']} | "
                     f"{r['rejected']} | {rate} | {r['unreviewed_drafts']} | {est} |")
    return "\n".join(lines) + "\n"
