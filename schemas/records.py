"""Pydantic record types for every table the engine writes, plus their pyarrow schemas."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field

# 1.1: reviews by span, every annotation kept, rows name their annotation; 1.2: release rows carry motion phrases;
# 1.3: the `checks` table (draft checks' flags); 1.4: declared splits; 1.5: reasoning chains (`chains`, `reasoning` rows)
SCHEMA_VERSION = "1.5"

Level = Literal["clip", "event", "video"]
InstructionTask = Literal["caption", "judgement", "description", "analysis", "qa", "reasoning"]
QAType = Literal["what", "who", "where", "when", "how", "how_much", "why"]
Provenance = Literal["human", "auto_draft", "accepted", "edited", "rejected", "boundaries_corrected"]
# Text that passed a person: the only text a release takes by default; a machine draft nobody has judged yet.
REVIEWED: tuple[Provenance, ...] = ("human", "accepted", "edited")
DRAFT: Provenance = "auto_draft"
CutMode = Literal["accurate", "copy"]
AnnotationFormat = Literal["hivau", "uca", "csv", "none"]
QuarantineLevel = Literal["entry", "video", "event", "clip", "span"]
# a release's two splits; a batch declares one of them, or `auto`: each video by a hash of its id
Split = Literal["train", "test"]
DeclaredSplit = Literal["train", "test", "auto"]
# error: the draft is likely wrong (held out of releases unreviewed, reviewed first); warn: worth a look
Severity = Literal["error", "warn"]

__all__ = [
    "SCHEMA_VERSION", "REVIEWED", "DRAFT", "Level", "InstructionTask", "QAType", "Provenance", "CutMode",
    "AnnotationFormat", "Split", "DeclaredSplit",
    "Generator", "SourceVideo", "Event", "Clip", "Caption", "Summary", "QAPair", "ReasoningChain", "QuarantineRecord",
    "MotionPhraseRecord", "CheckRecord", "Severity", "ReviewedText", "ReviewRecord", "InstructionRow", "arrow_schema", "to_arrow_table",
    "read_release_rows", "read_release_ids", "read_vau_rows", "TABLE_MODELS", "VauTask", "VauTaskRow",
    "CHOICE_LETTERS", "NO_SPAN", "VAU_R1_COLUMNS",
]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: str = SCHEMA_VERSION


class Generator(BaseModel):
    """What produced a text: `human` for imported annotations, else a backend, its model and prompt."""

    model_config = ConfigDict(extra="forbid")
    backend: str
    model: Optional[str] = None
    prompt_version: Optional[str] = None


HUMAN = Generator(backend="human")


class SourceVideo(Record):
    """One source video with its probe results."""

    video_id: str
    path: str
    source_format: AnnotationFormat
    labels: list[str] = Field(default_factory=list)
    is_anomaly: bool = False
    size_bytes: int = 0
    mtime_ns: int = 0  # with size_bytes: a re-run re-probes only a file that changed
    duration_s: float = 0.0
    fps: float = 0.0
    r_fps: Optional[float] = None
    is_vfr: bool = False
    n_frames: int = 0
    width: int = 0
    height: int = 0
    rotation: int = 0
    codec: str = ""
    pix_fmt: Optional[str] = None
    has_audio: bool = False
    keyframe_times: list[float] = Field(default_factory=list)
    batch: Optional[str] = None  # the batch whose build wrote it
    split: Optional[Split] = None  # declared by its batch (`hivau build --split`); None: by hash at release


class Segment(Record):
    """Fields shared by events and clips: requested times, the times actually cut, and the media file."""

    video_id: str
    index: int
    start_s: float
    end_s: float
    cut_start_s: Optional[float] = None
    cut_end_s: Optional[float] = None
    cut_mode: Optional[CutMode] = None
    media_path: Optional[str] = None
    n_frames: Optional[int] = None
    labels: list[str] = Field(default_factory=list)
    is_anomaly: bool = False
    notes: list[str] = Field(default_factory=list)
    # None until a reviewer touches the segment; `boundaries_corrected` once its times were moved in review
    provenance: Optional[Provenance] = None
    corrected_by: Optional[int] = None  # the Label Studio annotation whose boundary move these times carry


class Event(Segment):
    """An event segment: `{vid}_E{i}`, cut from its source video."""

    event_id: str
    origin: Literal["annotation", "normal_sample"] = "annotation"


class Clip(Segment):
    """A clip inside an event: `{vid}_E{i}C{j}`."""

    clip_id: str
    event_id: str
    origin: Literal["annotation", "span", "split_even", "split_fixed"] = "annotation"


class Caption(Record):
    item_id: str
    level: Level
    video_id: str
    text: str
    provenance: Provenance
    generator: Generator
    annotation_id: Optional[int] = None  # the reviewer's annotation this text came from, if any
    frame_times: list[float] = Field(default_factory=list)


class Summary(Record):
    item_id: str
    level: Level
    video_id: str
    text: str
    judgement: Optional[str] = None
    description: Optional[str] = None
    analysis: Optional[str] = None
    provenance: Provenance
    generator: Generator
    annotation_id: Optional[int] = None  # the reviewer's annotation this text came from, if any


class QAPair(Record):
    item_id: str
    level: Level
    video_id: str
    qa_type: QAType
    question: str
    answer: str
    provenance: Provenance
    generator: Generator
    annotation_id: Optional[int] = None  # the reviewer's annotation this text came from, if any


class ReasoningChain(Record):
    """The reasoning chain of one event or video (perception -> cognition -> conclusion), one text of labelled
    lines (`hivau.schemas.chains`); its own provenance: a drafted chain beside a human summary is still a draft."""

    item_id: str
    level: Level
    video_id: str
    text: str
    provenance: Provenance
    generator: Generator
    annotation_id: Optional[int] = None  # the reviewer's annotation this text came from, if any


class QuarantineRecord(Record):
    """Something the run could not use, and why. Nothing is dropped without one of these."""

    item_id: str
    video_id: Optional[str] = None
    level: QuarantineLevel
    reason: str
    detail: str
    stage: Literal["ingest", "probe", "validate", "cut", "caption", "summarize", "qa", "motion", "review-media",
                   "verify", "verify-captions", "reason"]
    source: Optional[str] = None


class MotionPhraseRecord(Record):
    """One subject-verb-object motion phrase from a text (HAWK's motion-language targets)."""

    item_id: str
    level: Level
    video_id: str
    source: Literal["caption", "summary", "description"]
    text: str
    verb: str
    subjects: list[str] = Field(default_factory=list)
    objects: list[str] = Field(default_factory=list)
    preps: list[str] = Field(default_factory=list)
    text_provenance: Provenance
    generator: Generator


class CheckRecord(Record):
    """One failed check of one text: which item and field, the check (its name is its stat key), how bad, how
    sure, and the evidence a reviewer needs (the unsupported words, the time found, the duplicated text)."""

    item_id: str
    level: Level
    video_id: str
    target: str  # the text checked: caption, summary, judgement, description, analysis, qa, qa:{type}
    check: str
    severity: Severity
    score: float = 1.0
    evidence: str = ""
    text_provenance: Provenance
    generator: Generator
    attempts: int = 0  # repair requests the kept draft took (0: the first answer)


class ReviewedText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str  # the review config's control name: caption, summary, judgement, ..., q_what, a_what
    text: str


def segment_key(level: Level, video_id: str, start_s: Optional[float] = None, end_s: Optional[float] = None) -> str:
    """What a review belongs to: the video, and for events and clips their times (to the millisecond).

    Never the positional id (`{vid}_E{i}C{j}`): a re-plan with other clip settings gives the same id to
    other times, and a reviewer's words must not move with it.
    """
    if level == "video":
        return f"video|{video_id}"
    return f"{level}|{video_id}|{round(1000 * float(start_s))}|{round(1000 * float(end_s))}"


class ReviewRecord(Record):
    """One submitted Label Studio annotation of one task, as pulled: the human's exact words, who, when.

    Every annotation of a task is kept (two reviewers of one clip leave two records); the merge picks one
    by the workspace's declared rule, and release rows name the annotation they came from.
    """

    item_id: str  # the positional id the task was pushed under (for people; matching uses `key`)
    level: Level
    video_id: str
    project: str
    task_id: int
    annotation_id: int
    # the span the task showed: the review belongs to these times
    seen_start_s: Optional[float] = None
    seen_end_s: Optional[float] = None
    prediction_id: Optional[int] = None  # the draft the editor was pre-filled with
    draft_sha: Optional[str] = None  # that draft's content hash, when the task still holds it
    verdict: Optional[Literal["accept", "reject"]] = None
    texts: list[ReviewedText] = Field(default_factory=list)
    # corrected event boundaries on the source video's clock, when the reviewer moved them
    start_s: Optional[float] = None
    end_s: Optional[float] = None
    # video level: the anomalous spans a reviewer kept or drew (from the scorer's proposals), in seconds
    events: list[list[float]] = Field(default_factory=list)
    completed_by: Optional[int] = None
    created_at: str = ""
    updated_at: str = ""
    lead_time_s: Optional[float] = None
    was_cancelled: bool = False
    audit: bool = False  # the task was in the random audit sample
    result_json: str = "[]"  # the annotation's result, verbatim, as Label Studio sent it

    @property
    def key(self) -> str:
        if self.level != "video" and self.seen_start_s is None:
            return f"id|{self.level}|{self.item_id}"  # pulled before reviews knew their span: by position
        return segment_key(self.level, self.video_id, self.seen_start_s, self.seen_end_s)

    def text(self, name: str) -> Optional[str]:
        """The reviewer's text for one control, or None when the annotation leaves it empty."""
        return next((t.text for t in self.texts if t.name == name and t.text), None)


class InstructionRow(Record):
    """One instruction-tuning row of a release."""

    id: str
    item_id: str
    split: Split
    level: Level
    task: InstructionTask
    qa_type: Optional[QAType] = None
    media_path: str
    source_video: str
    start_s: float
    end_s: float
    labels: list[str] = Field(default_factory=list)
    is_anomaly: bool = False
    prompt: str
    answer: str
    provenance: Provenance
    generator: Generator
    annotation_id: Optional[int] = None  # the Label Studio annotation the answer came from (reviewed rows)
    # caption and description rows: the motion phrases of their answer (HAWK's motion-language targets)
    motion_phrases: list[str] = Field(default_factory=list)


# verifiable tasks: answers a program can check (VAU-R1 / Vad-R1 style RL rewards and their evaluation)
VauTask = Literal["choice", "grounding", "classify", "detect"]
CHOICE_LETTERS = ("A", "B", "C", "D")
NO_SPAN = (-1.0, -1.0)  # the grounding answer of a normal video
# VAU-R1's VAU-Bench CSV (GVCLab/VAU-R1 `annotations/test_ucf_crime.csv`): one row per video, `-1` where a field
# does not apply, `Reasoning` a dict string of its six parts
VAU_R1_COLUMNS = ("Video Name", "Question", "Option 1", "Option 2", "Option 3", "Option 4", "Correct Option",
                  "Key Object", "Description", "Reasoning", "Anomaly Class", "Start Time", "End Time")


class VauTaskRow(Record):
    """One verifiable task of a release (`vau/{split}.parquet`), drawn from the store with a seed.

    `solution` is the one right answer as a program compares it: `choice` a letter A-D (`options` the four
    texts, in order), `grounding` "[start, end]" in seconds of `media_path`'s video ("[-1, -1]" for a normal
    video), `classify` a class name or "Normal", `detect` "yes" or "no" (is there an anomaly)."""

    id: str
    item_id: str
    split: Split
    level: Level
    task: VauTask
    media_path: str  # grounding asks about the whole source video; the other tasks show the item itself
    source_video: str
    start_s: float  # the item's span in its source video
    end_s: float
    duration_s: float  # of the media the question is about
    labels: list[str] = Field(default_factory=list)
    is_anomaly: bool = False
    question: str
    options: list[str] = Field(default_factory=list)
    solution: str
    answer_text: str  # the solution in words: the option's text, the class, the span
    provenance: Provenance  # of the text the task was made from (labels and times: the annotation's)
    seed: int


TABLE_MODELS: dict[str, type[Record]] = {
    "videos": SourceVideo,
    "events": Event,
    "clips": Clip,
    "captions": Caption,
    "summaries": Summary,
    "qa": QAPair,
    "chains": ReasoningChain,
    "motion_phrases": MotionPhraseRecord,
    "checks": CheckRecord,
    "quarantine": QuarantineRecord,
    "reviews": ReviewRecord,
    "reviews_unmatched": ReviewRecord,
    "instructions": InstructionRow,
    "vau_tasks": VauTaskRow,
}

def _arrow_type(annotation):
    """Map a field annotation to (arrow type, nullable)."""
    import pyarrow as pa  # imported here so that the record models import fast

    scalars = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner, _ = _arrow_type(args[0])
        return inner, True
    if origin is Literal:
        return pa.string(), False
    if origin is list:
        (item,) = typing.get_args(annotation)
        return pa.list_(_arrow_type(item)[0]), False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct([_arrow_field(n, f.annotation) for n, f in annotation.model_fields.items()]), False
    if annotation in scalars:
        return scalars[annotation], False
    raise TypeError(f"no arrow type for {annotation!r}")


def _arrow_field(name: str, annotation):
    import pyarrow as pa

    arrow_type, nullable = _arrow_type(annotation)
    return pa.field(name, arrow_type, nullable=nullable)


def arrow_schema(model: type[BaseModel]):
    """The pyarrow schema matching a record model, field for field."""
    import pyarrow as pa

    fields = [_arrow_field(n, f.annotation) for n, f in model.model_fields.items()]
    return pa.schema(fields, metadata={"schema_version": SCHEMA_VERSION, "record": model.__name__})


def read_release_rows(release: str | Path, split: str, levels: Optional[Sequence[str]] = None,
                      tasks: Optional[Sequence[str]] = None, missing_ok: bool = False,
                      by_id: bool = False) -> list[InstructionRow]:
    """A release's rows of one split (`data/{split}.parquet`), in the release's order or by id: the one reader of a
    release's rows, for the trainer, the evaluation, the frame export and the protocol alike. Media paths stay
    relative to `release`."""
    import pyarrow.parquet as pq

    path = Path(release) / "data" / f"{split}.parquet"
    if missing_ok and not path.is_file():
        return []
    rows = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):  # never the whole table as dicts at once
        rows += [InstructionRow.model_validate(r) for r in batch.to_pylist()
                 if (levels is None or r["level"] in levels) and (tasks is None or r["task"] in tasks)]
    return sorted(rows, key=lambda r: r.id) if by_id else rows


def read_vau_rows(release: str | Path, split: str, tasks: Optional[Sequence[str]] = None,
                  missing_ok: bool = False) -> list[VauTaskRow]:
    """A release's verifiable tasks of one split (`vau/{split}.parquet`), in the release's order."""
    import pyarrow.parquet as pq

    path = Path(release) / "vau" / f"{split}.parquet"
    if missing_ok and not path.is_file():
        return []
    return [VauTaskRow.model_validate(r) for r in pq.read_table(path).to_pylist()
            if tasks is None or r["task"] in tasks]


def read_release_ids(release: str | Path, split: str) -> set[str]:
    """The row ids of one split of a release (only the `id` column is read); empty when the split has no file."""
    import pyarrow.parquet as pq

    path = Path(release) / "data" / f"{split}.parquet"
    return set(pq.read_table(path, columns=["id"]).column("id").to_pylist()) if path.is_file() else set()


def to_arrow_table(records: list[BaseModel], model: type[BaseModel]):
    import pyarrow as pa

    schema = arrow_schema(model)
    return pa.Table.from_pylist([r.model_dump(mode="json") for r in records], schema=schema)
