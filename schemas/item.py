"""VideoItem, the one record every stage reads and writes; BatchRecord; Tables, many records as flat lists."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from hivau.schemas.records import (
    AnnotationFormat,
    Caption,
    CheckRecord,
    Clip,
    DeclaredSplit,
    Event,
    MotionPhraseRecord,
    QAPair,
    QuarantineLevel,
    QuarantineRecord,
    ReasoningChain,
    SourceVideo,
    Split,
    Summary,
)

# A record's progress through the build; `done` and `quarantined` are final (only those reach the manifests).
Status = Literal["ingested", "probed", "planned", "cut", "captioned", "drafted", "done", "quarantined"]


class SummarySplit(BaseModel):
    judgement: Optional[str] = None
    description: Optional[str] = None
    analysis: Optional[str] = None


# Annotation times may be NaN (a broken file): kept as NaN through the store, reported at planning.
_NAN_SAFE = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class AnnotatedClip(BaseModel):
    model_config = _NAN_SAFE
    start_s: float
    end_s: float
    caption: Optional[str] = None


class AnnotatedEvent(BaseModel):
    """An event as the annotation gives it; `unit='frame'` times are turned into seconds after probing."""

    model_config = _NAN_SAFE
    start_s: float
    end_s: float
    unit: Literal["s", "frame"] = "s"
    clips: list[AnnotatedClip] = Field(default_factory=list)
    summary: Optional[str] = None
    summary_split: Optional[SummarySplit] = None


class VideoItem(BaseModel):
    """Everything known about one source video, filled in stage by stage."""

    model_config = ConfigDict(ser_json_inf_nan="constants")

    video_id: str
    path: Optional[str] = None
    source_format: AnnotationFormat
    source: Optional[str] = None  # annotation file and key, for error messages
    labels: list[str] = Field(default_factory=list)
    # None: unannotated (no events known); []: annotated with no events (normal video).
    events: Optional[list[AnnotatedEvent]] = None
    # UCA-style captioned spans not yet assigned to events (assigned once times are known).
    spans: list[AnnotatedClip] = Field(default_factory=list)
    video_summary: Optional[str] = None
    video_summary_split: Optional[SummarySplit] = None
    declared_fps: Optional[float] = None
    declared_n_frames: Optional[int] = None
    declared_duration_s: Optional[float] = None

    probe: Optional[SourceVideo] = None
    planned_events: list[Event] = Field(default_factory=list)
    planned_clips: list[Clip] = Field(default_factory=list)
    captions: list[Caption] = Field(default_factory=list)
    summaries: list[Summary] = Field(default_factory=list)
    qa: list[QAPair] = Field(default_factory=list)
    chains: list[ReasoningChain] = Field(default_factory=list)  # drafted reasoning chains of events and the video
    motion_phrases: list[MotionPhraseRecord] = Field(default_factory=list)
    checks: list[CheckRecord] = Field(default_factory=list)  # the failed checks of its texts (the verify stage)
    repairs: list["RepairRecord"] = Field(default_factory=list)  # LLM drafts asked again after failing a check
    quarantine: list[QuarantineRecord] = Field(default_factory=list)
    status: Status = "ingested"
    batch: Optional[str] = None  # the batch whose build wrote this record
    split: Optional[Split] = None  # the split its batch declared (or an earlier batch did); None: by hash

    @property
    def is_anomaly(self) -> bool:
        return bool(self.labels) and not any(label.lower() == "normal" for label in self.labels)

    def advance(self, status: Status) -> None:
        """Record that a stage finished this video; a quarantined record stays quarantined. Only the task layer
        calls this, and an unfinished record's status says where a stopped build left it."""
        if self.status != "quarantined":
            self.status = status

    def failure(self, item_id: str, level: QuarantineLevel, stage: str, reason: str, detail: str) -> QuarantineRecord:
        """The quarantine record of this video or one of its segments: every stage reports failures this way."""
        return QuarantineRecord(item_id=item_id, video_id=self.video_id, level=level, reason=reason, detail=detail,
                                stage=stage, source=self.source)

    def video_row(self) -> SourceVideo:
        """The video's manifest row: what the probe measured of the file, with the labels this record owns (the
        annotation's, or a reviewer's who kept anomalous spans on an unannotated video)."""
        return self.probe.model_copy(update={"labels": list(self.labels), "is_anomaly": self.is_anomaly,
                                             "source_format": self.source_format, "batch": self.batch,
                                             "split": self.split})


class RepairRecord(BaseModel):
    """One LLM draft that failed an error-level check and was asked again with the evidence."""

    item_id: str
    level: str
    target: str  # summary, qa, chain
    attempts: int  # repair requests sent (each cached)
    failed_before: list[str] = Field(default_factory=list)  # the error checks of the first draft
    failed_after: list[str] = Field(default_factory=list)  # those of the kept draft: empty when repaired

    @property
    def repaired(self) -> bool:
        return not self.failed_after


VideoItem.model_rebuild()


class BatchRecord(BaseModel):
    """One batch of input (an annotation file and its videos folder) as last built into a workspace."""

    batch_id: str
    format: AnnotationFormat
    annotations: Optional[str] = None
    videos_dir: Optional[str] = None
    labels: Optional[str] = None
    split: DeclaredSplit = "auto"  # the split its videos go to in every release; auto: by a hash of the video id
    created_at: str
    built_at: Optional[str] = None
    n_entries: int = 0
    video_ids: list[str] = Field(default_factory=list)
    # entries that never became a video record (malformed, no file, no labels): their reasons
    quarantine: list[QuarantineRecord] = Field(default_factory=list)
    last_build: dict = Field(default_factory=dict)  # seconds per stage, segments cut, where shards ran


@dataclass
class Tables:
    """Records of many videos as flat lists, one per manifest table (what the merge, review and release read)."""

    videos: list[SourceVideo] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    clips: list[Clip] = field(default_factory=list)
    captions: list[Caption] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)
    qa: list[QAPair] = field(default_factory=list)
    chains: list[ReasoningChain] = field(default_factory=list)
    motion_phrases: list[MotionPhraseRecord] = field(default_factory=list)
    checks: list[CheckRecord] = field(default_factory=list)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The manifest tables these lists are read from and written to."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, items: Iterable[VideoItem]) -> "Tables":
        """The drafts of processed videos (quarantined ones have none)."""
        out = cls()
        for item in items:
            if item.status != "done" or item.probe is None:
                continue
            out.videos.append(item.video_row())
            out.events += item.planned_events
            out.clips += item.planned_clips
            out.captions += item.captions
            out.summaries += item.summaries
            out.qa += item.qa
            out.chains += item.chains
            out.motion_phrases += item.motion_phrases
            out.checks += item.checks
        return out
