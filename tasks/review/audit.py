"""The audit figures a release reports: the audit sample's acceptance per level and generator with a 95% Wilson
interval, and how many unreviewed drafts would be rejected at that rate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

from hivau.schemas.item import Tables
from hivau.schemas.records import ReviewRecord


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
