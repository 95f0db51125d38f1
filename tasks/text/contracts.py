"""What roll-up backends are given (a timed text context) and what they answer (validated summaries, 5W2H pairs,
reasoning chains)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Protocol

from pydantic import BaseModel, ConfigDict

from hivau.schemas.chains import Chain
from hivau.schemas.records import Generator, Level, QAType

QA_TYPES: tuple[QAType, ...] = ("what", "who", "where", "when", "how", "how_much", "why")


# ---------------------------------------------------------------- what backends answer
class SummaryOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    summary: str
    judgement: str
    description: str
    analysis: Optional[str]


class JudgeOut(BaseModel):
    """The LLM judge's scores of one draft (1-5 each) and its verdict."""

    model_config = ConfigDict(extra="forbid")
    faithfulness: int
    label_consistency: int
    completeness: int
    verdict: Literal["keep", "review", "discard"]
    reason: str


class QAItemOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    qa_type: QAType
    question: str
    answer: str


class QAOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pairs: list[QAItemOut]


class ObservationOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start_s: float
    end_s: float
    text: str


class ChainOut(BaseModel):
    """A reasoning chain: perception (the scene, then what each clip or event shows, with its times), cognition
    (what happens and which class; why it is or is not an anomaly; its cause and consequence), conclusion."""

    model_config = ConfigDict(extra="forbid")
    scene: str
    observations: list[ObservationOut]
    what_happens: str
    why: str
    cause: Optional[str]
    consequence: Optional[str]
    conclusion: str

    def chain(self) -> Chain:
        return Chain(scene=self.scene.strip(), observations=[(o.start_s, o.end_s, o.text.strip()) for o in self.observations],
                     what_happens=self.what_happens.strip(), why=self.why.strip(), cause=(self.cause or "").strip(),
                     consequence=(self.consequence or "").strip(), conclusion=self.conclusion.strip())


def check_chain(anomalous: bool):
    """Validation past the schema: every part present (cause and consequence for anomalies only), observations
    with text, in time order."""

    def check(out: ChainOut) -> ChainOut:
        observations = sorted((o for o in out.observations if o.text.strip()), key=lambda o: (o.start_s, o.end_s))
        out = out.model_copy(update={"observations": observations})
        missing = out.chain().missing(anomalous)
        if missing:
            raise ValueError(f"empty {', '.join(missing)}")
        return out if anomalous else out.model_copy(update={"cause": None, "consequence": None})

    return check


def check_summary(anomalous: bool):
    """Validation past the schema: no empty text; analysis for anomalies only (HIVAU-70k's split)."""

    def check(out: SummaryOut) -> SummaryOut:
        for name in ("summary", "judgement", "description"):
            if not getattr(out, name).strip():
                raise ValueError(f"empty {name}")
        if anomalous and not (out.analysis or "").strip():
            raise ValueError("an anomalous item needs an analysis")
        return out if anomalous else out.model_copy(update={"analysis": None})

    return check


def check_qa(out: QAOut) -> QAOut:
    """One non-empty pair per 5W2H type, in the canonical order; duplicates keep the first."""
    first: dict[str, QAItemOut] = {}
    for pair in out.pairs:
        if pair.question.strip() and pair.answer.strip():
            first.setdefault(pair.qa_type, pair)
    missing = [t for t in QA_TYPES if t not in first]
    if missing:
        raise ValueError(f"no usable pair for {', '.join(missing)}")
    return QAOut(pairs=[first[t] for t in QA_TYPES])


# ---------------------------------------------------------------- what backends are given
@dataclass
class TextContext:
    """One event or video, with the timed texts it is summarised from."""

    item_id: str
    level: Level
    video_id: str
    labels: list[str]
    is_anomaly: bool
    start_s: float
    end_s: float
    lines: list[tuple[float, float, str]]  # (start_s, end_s, text), in time order
    # The same spans with only what happens (event descriptions, no judgements): for the extractive backend.
    facts: Optional[list[tuple[float, float, str]]] = None
    anomalous_spans: Optional[list[tuple[float, float]]] = None  # video level: its anomalous events
    # a reasoning chain's context also has the item's summary: what happens, and why it is anomalous
    description: Optional[str] = None
    analysis: Optional[str] = None

    @property
    def variant(self) -> str:
        return "anomaly" if self.is_anomaly else "normal"

    @property
    def label_text(self) -> str:
        return ", ".join(self.labels) if self.is_anomaly else "normal"

    def timed_lines(self) -> str:
        return "\n".join(f"- [{s:.1f}-{e:.1f} s] {text}" for s, e, text in self.lines)


class RollupBackend(Protocol):
    name: str

    def generator(self, task: str) -> Generator: ...

    async def summarize(self, ctx: TextContext) -> SummaryOut: ...

    async def qa(self, ctx: TextContext) -> QAOut: ...

    async def reason(self, ctx: TextContext) -> ChainOut: ...
