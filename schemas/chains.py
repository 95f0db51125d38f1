"""Reasoning chains as text: the labelled lines a chain is stored, reviewed and trained on, and their parts.

A chain goes perception -> cognition -> conclusion (Vad-R1's order): the scene, then what each clip (or event)
shows with its times; what happens and of which class, why it is or is not an anomaly, its cause and its
consequence; a conclusion that matches the label. Stored as one text (what a reviewer edits and what goes inside
`<think>`), with one label per line so that the checks and the exports can read its parts back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

PARTS = ("perception", "cognition", "conclusion")
# the labelled fields, in order, and the part each belongs to
FIELD_LABELS = {"scene": "Scene", "what_happens": "What happens", "why": "Why", "cause": "Cause",
                "consequence": "Consequence", "conclusion": "Conclusion"}
PART_OF = {"scene": "perception", "observations": "perception", "what_happens": "cognition", "why": "cognition",
           "cause": "cognition", "consequence": "cognition", "conclusion": "conclusion"}
REQUIRED = ("scene", "observations", "what_happens", "why", "conclusion")  # cause and consequence: anomalies only

_LABEL = re.compile(r"^\s*(" + "|".join(FIELD_LABELS.values()) + r")\s*:\s*(.*)$", re.I)
_HEADER = re.compile(r"^\s*(perception|cognition)\s*:\s*$", re.I)
_OBSERVATION = re.compile(r"^\s*\[\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*s\s*\]\s*(.*)$")
_FIELD_OF = {label.lower(): name for name, label in FIELD_LABELS.items()}


@dataclass
class Chain:
    scene: str = ""
    observations: list[tuple[float, float, str]] = field(default_factory=list)  # (start_s, end_s, text) in order
    what_happens: str = ""
    why: str = ""
    cause: str = ""
    consequence: str = ""
    conclusion: str = ""

    def missing(self, anomalous: bool) -> list[str]:
        """The fields a chain must have that this one leaves empty."""
        needed = REQUIRED + (("cause", "consequence") if anomalous else ())
        return [name for name in needed if not getattr(self, name)]

    def part(self, name: str) -> str:
        """One part's text, its fields' contents joined (the checks read parts, not labels)."""
        texts = []
        for field_name, part in PART_OF.items():
            if part != name:
                continue
            if field_name == "observations":
                texts += [f"[{s:.1f}-{e:.1f} s] {t}" for s, e, t in self.observations]
            elif getattr(self, field_name):
                texts.append(getattr(self, field_name))
        return " ".join(texts)


def format_chain(chain: Chain) -> str:
    """The chain as stored and reviewed: one labelled field per line; empty optional fields left out."""
    lines = ["Perception:", f"Scene: {chain.scene.strip()}"]
    lines += [f"[{s:.1f}-{e:.1f} s] {' '.join(t.split())}" for s, e, t in chain.observations]
    lines.append("Cognition:")
    lines += [f"{FIELD_LABELS[name]}: {' '.join(getattr(chain, name).split())}"
              for name in ("what_happens", "why", "cause", "consequence") if getattr(chain, name).strip()]
    lines.append(f"Conclusion: {' '.join(chain.conclusion.split())}")
    return "\n".join(lines)


def parse_chain(text: str) -> Chain:
    """A chain's fields from its text; tolerant of a reviewer's edits (a field's text may run over several lines,
    part headers may go). Text before any label counts as the scene."""
    chain, current = Chain(), "scene"
    for line in (text or "").splitlines():
        if not line.strip() or _HEADER.match(line):
            continue
        if m := _OBSERVATION.match(line):
            chain.observations.append((float(m.group(1)), float(m.group(2)), m.group(3).strip()))
            current = "observations"
        elif m := _LABEL.match(line):
            current = _FIELD_OF[m.group(1).lower()]
            setattr(chain, current, m.group(2).strip())
        elif current == "observations" and chain.observations:
            s, e, t = chain.observations[-1]
            chain.observations[-1] = (s, e, f"{t} {line.strip()}".strip())
        else:
            setattr(chain, current, f"{getattr(chain, current)} {line.strip()}".strip())
    return chain


# VAU-R1's `Reasoning` cell: a dict of six parts, read from ours
VAU_R1_REASONING_KEYS = ("Specific Anomaly Type", "Location", "Key Evidence", "Detailed Explanation",
                         "Cause and Effect", "Conclusion")


def vau_r1_reasoning(text: str, anomaly_type: str) -> str:
    """A chain as VAU-R1's `Reasoning` cell (a JSON object, which Python's literal_eval reads too)."""
    chain = parse_chain(text)
    evidence = " ".join(f"[{s:.1f}-{e:.1f} s] {t}" for s, e, t in chain.observations)
    values = (anomaly_type, chain.scene, evidence, " ".join(x for x in (chain.what_happens, chain.why) if x),
              " ".join(x for x in (chain.cause, chain.consequence) if x), chain.conclusion)
    return json.dumps(dict(zip(VAU_R1_REASONING_KEYS, values)), ensure_ascii=False)
