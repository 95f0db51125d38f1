"""Annotation loaders (HIVAU-70k raw JSON, UCA JSON + label file, CSV/JSONL, bare folder) into VideoItems.

Every entry of an annotation file ends up either as a VideoItem or as an entry-level QuarantineRecord.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from hivau.schemas import reasons
from hivau.schemas.item import AnnotatedClip, AnnotatedEvent, SummarySplit, VideoItem
from hivau.schemas.records import AnnotationFormat, QuarantineRecord

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")
NORMAL_LABELS = {"", "normal", "none", "normal_videos"}


@dataclass
class IngestReport:
    items: list[VideoItem] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    n_entries: int = 0

    def reject(self, key: str, reason: str, detail: str, source: str, level: str = "entry") -> None:
        self.quarantine.append(QuarantineRecord(item_id=key, video_id=key, level=level, reason=reason,
                                                detail=detail, stage="ingest", source=source))


def index_videos(videos_dir: Optional[str | Path]) -> dict[str, Path]:
    """Map each video's file stem to its path, searching subfolders (UCF-Crime keeps one per class)."""
    if not videos_dir:
        return {}
    found: dict[str, Path] = {}
    for root, dirs, files in os.walk(videos_dir):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.suffix.lower() in VIDEO_EXTENSIONS and not name.startswith("."):
                found.setdefault(path.stem, path)
    return found


def _attach_path(report: IngestReport, item: VideoItem, videos: dict[str, Path], videos_dir) -> None:
    path = videos.get(item.video_id)
    if path is None:
        report.reject(item.video_id, reasons.VIDEO_MISSING,
                      f"no video file named {item.video_id}.* under {videos_dir}", item.source or "", level="video")
        return
    item.path = str(path)
    report.items.append(item)


def _normalise_labels(labels: Iterable[str]) -> list[str]:
    return [lab.strip() for lab in labels if lab and lab.strip().lower() not in NORMAL_LABELS]


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" + (f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else "")


# ---------------------------------------------------------------- HIVAU-70k raw annotations

class HivauRawEntry(BaseModel):
    """One video of HolmesVAU's `HIVAU-70k/raw_annotations/*.json`."""

    model_config = ConfigDict(extra="ignore")
    n_frames: Optional[int] = None
    fps: Optional[float] = None
    label: list[str] = []
    events: list[tuple[float, float]] = []
    clips: list[list[tuple[float, float]]] = []
    clips_caption: Optional[list[list[str]]] = None
    events_summary: Optional[list[str]] = None
    video_summary: Optional[str] = None
    events_summary_split: Optional[list[SummarySplit]] = None
    video_summary_split: Optional[SummarySplit] = None

    def structure_problem(self) -> Optional[str]:
        n = len(self.events)
        if self.clips and len(self.clips) != n:
            return f"{len(self.clips)} clip lists for {n} events"
        if self.clips_caption is not None and [len(c) for c in self.clips_caption] != [len(c) for c in self.clips]:
            return "clips_caption does not match clips in shape"
        for name in ("events_summary", "events_summary_split"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                return f"{len(value)} {name} entries for {n} events"
        return None


def load_hivau(path: str | Path, videos_dir: Optional[str | Path]) -> IngestReport:
    raw = _read_json(path)
    report = IngestReport()
    videos = index_videos(videos_dir)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by video id, got {type(raw).__name__}")
    for video_id, entry in raw.items():
        report.n_entries += 1
        source = f"{Path(path).name}:{video_id}"
        try:
            parsed = HivauRawEntry.model_validate(entry)
        except ValidationError as exc:
            report.reject(video_id, reasons.ENTRY_MALFORMED, _problem(exc), source)
            continue
        if problem := parsed.structure_problem():
            report.reject(video_id, reasons.ENTRY_MALFORMED, problem, source)
            continue
        events = []
        for i, (start, end) in enumerate(parsed.events):
            spans = parsed.clips[i] if parsed.clips else []
            captions = parsed.clips_caption[i] if parsed.clips_caption else [None] * len(spans)
            split = parsed.events_summary_split[i] if parsed.events_summary_split else None
            events.append(AnnotatedEvent(
                start_s=start, end_s=end,
                clips=[AnnotatedClip(start_s=s, end_s=e, caption=c) for (s, e), c in zip(spans, captions)],
                summary=parsed.events_summary[i] if parsed.events_summary else None,
                summary_split=split,
            ))
        item = VideoItem(
            video_id=video_id, source_format="hivau", source=source, labels=_normalise_labels(parsed.label),
            events=events, video_summary=parsed.video_summary,
            video_summary_split=parsed.video_summary_split,
            declared_fps=parsed.fps, declared_n_frames=parsed.n_frames,
            declared_duration_s=(parsed.n_frames / parsed.fps) if parsed.n_frames and parsed.fps else None,
        )
        _attach_path(report, item, videos, videos_dir)
    return report


# ---------------------------------------------------------------- UCA + event label file

class UcaEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    duration: Optional[float] = None
    timestamps: list[tuple[float, float]]
    sentences: list[str]


@dataclass
class VideoLabel:
    labels: list[str]
    events: list[tuple[float, float]]
    unit: str  # "s" or "frame"


def load_event_labels(path: str | Path) -> dict[str, VideoLabel]:
    """Event boundaries per video, from either label-file format.

    - UCF-Crime's `Temporal_Anomaly_Annotation*.txt`: `Name.mp4  Class  s1 e1 s2 e2` in frames, -1 for none;
    - CSV with a header `video_id,label,start_s,end_s`, one row per event (empty times: no event).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    out: dict[str, VideoLabel] = {}
    if text.lstrip().lower().startswith("video_id"):
        for row in csv.DictReader(text.splitlines()):
            vid = Path(row["video_id"].strip()).stem
            entry = out.setdefault(vid, VideoLabel(_normalise_labels([row.get("label", "")]), [], "s"))
            if (row.get("start_s") or "").strip():
                entry.events.append((float(row["start_s"]), float(row["end_s"])))
        return out
    for line_no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or (len(parts) - 2) % 2:
            raise ValueError(f"{path}:{line_no}: expected 'name class s1 e1 [s2 e2 ...]', got {line!r}")
        frames = [int(float(p)) for p in parts[2:]]
        events = [(s, e) for s, e in zip(frames[::2], frames[1::2]) if s >= 0 and e >= 0]
        out[Path(parts[0]).stem] = VideoLabel(_normalise_labels([parts[1]]), [(float(s), float(e)) for s, e in events], "frame")
    return out


def load_uca(path: str | Path, videos_dir: Optional[str | Path], labels_path: Optional[str | Path]) -> IngestReport:
    """UCA captioned spans joined with event boundaries; spans are assigned to events after probing."""
    if labels_path is None:
        raise ValueError("UCA annotations carry no event boundaries: pass a label file (--labels) as well")
    labels = load_event_labels(labels_path)
    raw = _read_json(path)
    report = IngestReport()
    videos = index_videos(videos_dir)
    for video_id, entry in raw.items():
        report.n_entries += 1
        source = f"{Path(path).name}:{video_id}"
        try:
            parsed = UcaEntry.model_validate(entry)
        except ValidationError as exc:
            report.reject(video_id, reasons.ENTRY_MALFORMED, _problem(exc), source)
            continue
        if len(parsed.timestamps) != len(parsed.sentences):
            report.reject(video_id, reasons.ENTRY_MALFORMED,
                          f"{len(parsed.timestamps)} timestamps for {len(parsed.sentences)} sentences", source)
            continue
        label = labels.get(video_id)
        if label is None:
            report.reject(video_id, reasons.ENTRY_NO_LABELS, f"{video_id} is not in the label file {labels_path}", source)
            continue
        item = VideoItem(
            video_id=video_id, source_format="uca", source=source, labels=label.labels,
            events=[AnnotatedEvent(start_s=s, end_s=e, unit=label.unit) for s, e in label.events],
            spans=[AnnotatedClip(start_s=s, end_s=e, caption=c.strip()) for (s, e), c in zip(parsed.timestamps, parsed.sentences)],
            declared_duration_s=parsed.duration,
        )
        _attach_path(report, item, videos, videos_dir)
    return report


# ---------------------------------------------------------------- users' CSV / JSONL

class _UserClip(BaseModel):
    start: float
    end: float
    caption: Optional[str] = None


class _UserEvent(BaseModel):
    start: float
    end: float
    clips: list[_UserClip] = []
    summary: Optional[str] = None

    @classmethod
    def coerce(cls, value):
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return {"start": value[0], "end": value[1]}
        return value


class UserEntry(BaseModel):
    """One video of the plain JSONL format (the CSV format is grouped into the same shape)."""

    model_config = ConfigDict(extra="forbid")
    video: str
    video_id: Optional[str] = None
    labels: list[str] = []
    events: list[_UserEvent] = []
    video_summary: Optional[str] = None

    @field_validator("labels", mode="before")
    @classmethod
    def _split_labels(cls, value):
        return [v for v in value.split(";")] if isinstance(value, str) else value

    @field_validator("events", mode="before")
    @classmethod
    def _pairs(cls, value):
        return [_UserEvent.coerce(v) for v in value] if isinstance(value, list) else value


def _csv_entries(path: Path) -> Iterable[tuple[str, dict]]:
    """Group CSV rows (`video,labels,event_start,event_end,clip_start,clip_end,caption`) into entries."""
    entries: dict[str, dict] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for line_no, row in enumerate(csv.DictReader(fh), 2):
            video = (row.get("video") or "").strip()
            entry = entries.setdefault(video, {"video": video, "labels": row.get("labels") or "", "events": [],
                                               "_line": line_no})
            if (row.get("event_start") or "").strip():
                key = (_num(row["event_start"]), _num(row.get("event_end")))
                event = next((e for e in entry["events"] if (e["start"], e["end"]) == key), None)
                if event is None:
                    event = {"start": key[0], "end": key[1], "clips": []}
                    entry["events"].append(event)
                if (row.get("clip_start") or "").strip():
                    event["clips"].append({"start": _num(row["clip_start"]), "end": _num(row.get("clip_end")),
                                           "caption": (row.get("caption") or None)})
    for video, entry in entries.items():
        yield f"{path.name}:{entry.pop('_line')}", entry


def _num(text: Optional[str]) -> float:
    """A CSV time; blank or unparsable becomes NaN so validation reports it instead of a crash here."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def load_user_table(path: str | Path, videos_dir: Optional[str | Path]) -> IngestReport:
    path = Path(path)
    if path.suffix.lower() == ".csv":
        entries = list(_csv_entries(path))
    else:
        entries = []
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    entries.append((f"{path.name}:{line_no}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    entries.append((f"{path.name}:{line_no}", {"_error": str(exc)}))
    report = IngestReport()
    seen: set[str] = set()
    base = Path(videos_dir) if videos_dir else path.parent
    for source, entry in entries:
        report.n_entries += 1
        key = str(entry.get("video_id") or Path(str(entry.get("video", ""))).stem or source)
        if "_error" in entry:
            report.reject(key, reasons.ENTRY_MALFORMED, f"not JSON: {entry['_error']}", source)
            continue
        try:
            parsed = UserEntry.model_validate(entry)
        except ValidationError as exc:
            report.reject(key, reasons.ENTRY_MALFORMED, _problem(exc), source)
            continue
        video_id = parsed.video_id or Path(parsed.video).stem
        if video_id in seen:
            report.reject(video_id, reasons.ENTRY_DUPLICATE, f"{video_id} appears more than once", source)
            continue
        seen.add(video_id)
        video_path = Path(parsed.video) if Path(parsed.video).is_absolute() else base / parsed.video
        item = VideoItem(
            video_id=video_id, source_format="csv", source=source, labels=_normalise_labels(parsed.labels),
            events=[AnnotatedEvent(start_s=e.start, end_s=e.end, summary=e.summary,
                                   clips=[AnnotatedClip(start_s=c.start, end_s=c.end, caption=c.caption) for c in e.clips])
                    for e in parsed.events],
            video_summary=parsed.video_summary,
        )
        if not video_path.is_file():
            report.reject(video_id, reasons.VIDEO_MISSING, f"{video_path} does not exist", source, level="video")
            continue
        item.path = str(video_path)
        report.items.append(item)
    return report


# ---------------------------------------------------------------- unannotated folder

def load_folder(videos_dir: str | Path) -> IngestReport:
    """Every video under `videos_dir` becomes a video-level item with no events yet."""
    report = IngestReport()
    for video_id, path in index_videos(videos_dir).items():
        report.n_entries += 1
        report.items.append(VideoItem(video_id=video_id, path=str(path), source_format="none",
                                      source=str(path), events=None))
    return report


def load_annotations(fmt: AnnotationFormat, annotations: Optional[str | Path], videos_dir: Optional[str | Path],
                     labels: Optional[str | Path] = None) -> IngestReport:
    """Dispatch to the loader for `fmt`; a missing or unreadable annotation file is a clear error."""
    # absolute paths, so that later stages (review media, releases) work from any working directory
    videos_dir = Path(videos_dir).resolve() if videos_dir else None
    if fmt == "none":
        if not videos_dir or not Path(videos_dir).is_dir():
            raise ValueError(f"videos folder {videos_dir!r} does not exist")
        return load_folder(videos_dir)
    if not annotations or not Path(annotations).is_file():
        raise ValueError(f"annotation file {annotations!r} does not exist (format {fmt!r} needs one)")
    if fmt == "hivau":
        return load_hivau(annotations, videos_dir)
    if fmt == "uca":
        return load_uca(annotations, videos_dir, labels)
    if fmt == "csv":
        return load_user_table(annotations, videos_dir)
    raise ValueError(f"unknown annotation format {fmt!r}")


def _read_json(path: str | Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
