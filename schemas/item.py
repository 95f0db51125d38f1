"""VideoItem: the one record that flows through ingest, probe, plan, cut, caption, roll-up and motion."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from hivau.schemas.records import (
    AnnotationFormat, Caption, Clip, Event, MotionPhraseRecord, QAPair, QuarantineRecord, SourceVideo, Summary,
)


class SummarySplit(BaseModel):
    judgement: Optional[str] = None
    description: Optional[str] = None
    analysis: Optional[str] = None


class AnnotatedClip(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start_s: float
    end_s: float
    caption: Optional[str] = None


class AnnotatedEvent(BaseModel):
    """An event as the annotation gives it; `unit='frame'` times are turned into seconds after probing."""

    model_config = ConfigDict(extra="forbid")
    start_s: float
    end_s: float
    unit: Literal["s", "frame"] = "s"
    clips: list[AnnotatedClip] = Field(default_factory=list)
    summary: Optional[str] = None
    summary_split: Optional[SummarySplit] = None


class VideoItem(BaseModel):
    """Everything known about one source video, filled in stage by stage."""

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
    motion_phrases: list[MotionPhraseRecord] = Field(default_factory=list)
    quarantine: list[QuarantineRecord] = Field(default_factory=list)
    status: Literal["ingested", "probed", "planned", "cut", "quarantined"] = "ingested"

    @property
    def is_anomaly(self) -> bool:
        return bool(self.labels) and not any(label.lower() == "normal" for label in self.labels)
