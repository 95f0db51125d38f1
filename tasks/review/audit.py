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


# ---------------------------------------------------------------- the draft checks, measured on the audit sample
def _item_outcomes(tables: Tables, audited_annotations: set[int]) -> dict[str, bool]:
    """item id -> whether reviewers changed it (rejected or edited any of its texts), for the items of the audit
    sample (their main text came from an audited annotation)."""
    main = _main_texts(tables)
    audited = {item_id for item_id, (_, generator, provenance, annotation_id) in main.items()
               if annotation_id in audited_annotations and provenance in ("accepted", "edited", "rejected")}
    changed = {t.item_id for t in [*tables.captions, *tables.summaries, *tables.qa, *tables.chains]
               if t.provenance in ("edited", "rejected")}
    return {item_id: item_id in changed for item_id in audited}


def _rate(hits: int, n: int) -> dict:
    low, high = wilson_interval(hits, n)
    return {"value": round(hits / n, 4) if n else None, "n": n, "ci95": [round(low, 4), round(high, 4)]}


def check_gate_table(tables: Tables, reviews: Iterable[ReviewRecord]) -> list[dict]:
    """Per check (and for any error flag): how many drafts it flagged, and on the audit sample its precision
    (flagged drafts that reviewers rejected or edited) and recall (rejected or edited drafts that it flagged),
    each with a 95% Wilson interval. Items are the unit: a clip, event or video."""
    outcomes = _item_outcomes(tables, {r.annotation_id for r in reviews if r.audit})
    drafted = [c for c in tables.checks if c.text_provenance == "auto_draft"]
    flagged: dict[str, set[str]] = {}
    for c in drafted:
        flagged.setdefault(c.check, set()).add(c.item_id)
    flagged["any error flag"] = {c.item_id for c in drafted if c.severity == "error"}
    changed = {i for i, was_changed in outcomes.items() if was_changed}
    rows = []
    for check, items in sorted(flagged.items(), key=lambda kv: (kv[0] == "any error flag", kv[0])):
        seen = items & outcomes.keys()
        hits = len(seen & changed)
        rows.append({"check": check, "flagged": len(items), "audited_flagged": len(seen),
                     "precision": _rate(hits, len(seen)), "recall": _rate(hits, len(changed))})
    return rows


def check_gate_markdown(table: list[dict], held_back: dict[str, int], policy: str) -> str:
    """The dataset card's section on the draft checks: what they flagged, how right they were on the audit
    sample, and what the release left out for them."""
    lines = ["## Draft checks", "",
             "Every machine draft was checked against its evidence (the span's clip captions, labels and times). "
             "Precision = flagged drafts in the audit sample that reviewers rejected or edited; recall = rejected "
             "or edited drafts of the audit sample that were flagged (items as the unit, 95% Wilson intervals).", "",
             "| check | drafts flagged | audited | precision (95% CI) | recall (95% CI) |", "|---|---|---|---|---|"]

    def fmt(rate: dict) -> str:
        return "n/a" if rate["value"] is None else f"{rate['value']:.1%} ({rate['ci95'][0]:.1%}-{rate['ci95'][1]:.1%})"

    for r in table:
        lines.append(f"| {r['check']} | {r['flagged']} | {r['audited_flagged']} | {fmt(r['precision'])} | "
                     f"{fmt(r['recall'])} |")
    total = sum(held_back.values())
    lines += ["", f"Release policy: unreviewed drafts with a flag at `{policy}` or worse were left out"
              if policy != "none" else "", ""]
    if policy != "none":
        lines[-2] += f": {total} rows" + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(held_back.items()))
                                          + ")" if held_back else "") + "."
    else:
        lines[-2] = "Release policy: flagged drafts were not held back (`--exclude-flagged none`)."
    return "\n".join(lines) + "\n"
