"""Push: every finished video's drafts go to its level's Label Studio project, new segments in review-queue order,
changed drafts as new predictions; annotations are never touched. Also the scorer's proposals on video tasks."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, Field

from hivau.schemas.item import Tables, VideoItem
from hivau.schemas.records import CheckRecord, Level, QAPair, segment_key
from hivau.tasks.review.labelstudio import LabelStudio, LabelStudioError
from hivau.tasks.review.media import ReviewMedia, prepare_review_media
from hivau.tasks.review.projects import ReviewSettings, document_root, ensure_project, media_url
from hivau.tasks.review.queue import QueueItem, queue_order
from hivau.tasks.review.results import (
    PROPOSALS,
    content_of,
    draft_sha,
    model_version,
    proposal_timeline,
    seconds_to_frames,
    summary_result,
    task_key,
    textarea,
    timeline,
)
from hivau.workspace import Workspace, atomic_write_json


@dataclass
class ReviewTask:
    item_id: str
    level: Level
    key: str  # the segment it belongs to: video and times
    data: dict
    result: list[dict]
    model_version: str
    text: str = ""  # the main draft text (the queue's risk signals read it)
    generators: tuple[str, ...] = ()
    checks: tuple[CheckRecord, ...] = ()  # the failed checks of its drafts

    def payload(self) -> dict:
        return {"data": self.data, "predictions": [{"model_version": self.model_version, "result": self.result}]}


def flags_text(checks: list[CheckRecord]) -> str:
    """What the annotator reads above the editor: each failed check, the text it concerns and its evidence."""
    if not checks:
        return "No failed checks."
    ordered = sorted(checks, key=lambda c: (c.severity != "error", c.target, c.check))
    return "\n".join(f"{c.severity.upper()} {c.check} ({c.target}): {c.evidence}" for c in ordered)


def _drafts(summary, pairs: list, chain) -> list:
    """The records behind an event's or video's task (their generators name the task's model version)."""
    return ([summary] if summary else []) + pairs + ([chain] if chain else [])


def build_tasks(tables: Tables, media: dict[str, ReviewMedia], url_for) -> dict[Level, list[ReviewTask]]:
    """One review task per clip, event and video that has media, with its drafts as the prediction and their failed
    checks shown above the editor."""
    checks_of: dict[str, list[CheckRecord]] = {}
    for c in tables.checks:
        checks_of.setdefault(c.item_id, []).append(c)
    videos = {v.video_id: v for v in tables.videos}
    captions = {c.item_id: c for c in tables.captions}
    summaries = {s.item_id: s for s in tables.summaries}
    qa: dict[str, list[QAPair]] = {}
    for pair in tables.qa:
        qa.setdefault(pair.item_id, []).append(pair)
    chains = {c.item_id: c for c in tables.chains}
    out: dict[Level, list[ReviewTask]] = {"clip": [], "event": [], "video": []}

    def add(level: Level, item_id: str, video_id: str, labels: list[str], m: ReviewMedia, start: float, end: float,
            result: list[dict], drafts: list, text: str) -> None:
        key = segment_key(level, video_id, start, end)
        checks = checks_of.get(item_id, [])
        data = {"item_id": item_id, "level": level, "key": key, "video_id": video_id,
                "labels": ", ".join(labels) or "none", "video": url_for(m.path), "fps": m.fps, "offset_s": m.offset_s,
                "start_s": start, "end_s": end, "draft_sha": draft_sha(result), "flags": flags_text(checks),
                "errors": sum(c.severity == "error" for c in checks), "warnings": sum(c.severity == "warn" for c in checks),
                "checks": ", ".join(sorted({c.check for c in checks}))}
        out[level].append(ReviewTask(item_id, level, key, data, result, model_version([d.generator for d in drafts]),
                                     text, tuple(d.generator.backend for d in drafts), tuple(checks)))

    for clip in tables.clips:
        if clip.clip_id in media:
            cap = captions.get(clip.clip_id)
            add("clip", clip.clip_id, clip.video_id, clip.labels, media[clip.clip_id], clip.start_s, clip.end_s,
                textarea("caption", cap.text if cap else None), [cap] if cap else [], cap.text if cap else "")
    for event in tables.events:
        m = media.get(event.event_id)
        if m is None:
            continue
        s, pairs, chain = summaries.get(event.event_id), qa.get(event.event_id, []), chains.get(event.event_id)
        frames = seconds_to_frames(event.start_s - m.offset_s, event.end_s - m.offset_s, m.fps)
        add("event", event.event_id, event.video_id, event.labels, m, event.start_s, event.end_s,
            timeline(*frames) + summary_result(s, pairs, chain), _drafts(s, pairs, chain), s.text if s else "")
    for video_id, video in videos.items():
        m = media.get(video_id)
        if m is None:
            continue
        s, pairs, chain = summaries.get(video_id), qa.get(video_id, []), chains.get(video_id)
        add("video", video_id, video_id, video.labels, m, 0.0, video.duration_s, summary_result(s, pairs, chain),
            _drafts(s, pairs, chain), s.text if s else "")
    return out


class PushReport(BaseModel):
    projects: dict[str, int] = Field(default_factory=dict)
    created: dict[str, int] = Field(default_factory=dict)
    new_predictions: dict[str, int] = Field(default_factory=dict)
    unchanged: dict[str, int] = Field(default_factory=dict)
    audit: dict[str, int] = Field(default_factory=dict)  # new tasks put in the audit sample
    flags_updated: dict[str, int] = Field(default_factory=dict)  # known tasks whose draft checks changed
    requests: int = 0
    url: str = ""


TASK_FIELDS = "id,data,predictions"  # what a push reads of a known task
# what a task keeps from its first push when its flags are updated: its place in the queue
QUEUE_FIELDS = ("queue", "audit", "risk", "risk_reasons")


@dataclass
class KnownTask:
    id: int
    draft_sha: Optional[str]  # of its latest prediction
    queue: int
    flags: Optional[str]  # the draft checks it shows
    placed: dict  # its QUEUE_FIELDS


def latest_prediction(task: dict) -> Optional[dict]:
    predictions = [p for p in task.get("predictions") or [] if isinstance(p, dict)]
    return max(predictions, key=lambda p: p["id"]) if predictions else None


def known_tasks(ls: LabelStudio, project_id: int, level: Level) -> dict[str, KnownTask]:
    """segment key -> what a push needs of its task, listed page by page; only these small records are kept,
    whatever the project's size."""
    out = {}
    for task in ls.iter_tasks(project_id, include=TASK_FIELDS):
        data = task.get("data") or {}
        key = task_key(level, data)
        if key is None:
            continue
        last = latest_prediction(task)
        out[key] = KnownTask(task["id"], draft_sha(last["result"]) if last else None, int(data.get("queue") or 0),
                             data.get("flags"), {k: data[k] for k in QUEUE_FIELDS if k in data})
    return out


@dataclass
class QueuePlan:
    """Where a push puts each new segment in the review queue, written before its first import and removed once
    Label Studio holds them all: a push cut off part-way resumes with the same places and the same audit sample
    (planned again over only the rest, the sample would grow and stop being random)."""

    path: Optional[Path] = None  # none: nothing kept (a benchmark's push)
    server: str = ""  # the server and project it was made for; another one's plan is not used
    placements: dict[str, dict] = field(default_factory=dict)  # segment key -> its QUEUE_FIELDS

    @classmethod
    def load(cls, ws: Workspace, level: Level, url: str, project_id: int) -> "QueuePlan":
        path, server = ws.state / "review_push" / f"{level}.json", f"{url} project {project_id}"
        data = json.loads(path.read_bytes()) if path.is_file() else {}
        return cls(path, server, data.get("placements", {}) if data.get("server") == server else {})

    def save(self, placements: dict[str, dict]) -> None:
        self.placements = placements
        if self.path is not None:
            atomic_write_json(self.path, {"server": self.server, "placements": placements})

    def done(self) -> None:
        self.placements = {}
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@dataclass
class LevelProgress:
    """What Label Studio confirmed of one level's push so far (for the message of a push cut off part-way)."""

    new: int = 0
    sent: int = 0
    changed: int = 0
    predicted: int = 0
    reflagged: int = 0
    updated: int = 0

    def __str__(self) -> str:
        return (f"{self.sent} of {self.new} new tasks, {self.predicted} of {self.changed} changed drafts, "
                f"{self.updated} of {self.reflagged} flag updates")


def place(fresh: list[ReviewTask], known: dict[str, KnownTask], plan: QueuePlan, settings: ReviewSettings,
          seed: str) -> dict[str, dict]:
    """segment key -> queue fields of each new task: where an earlier, cut-off push planned it, else after every
    task placed so far, a new audit sample first."""
    placed = {t.key: plan.placements[t.key] for t in fresh if t.key in plan.placements}
    rest = [t for t in fresh if t.key not in placed]
    start = max([k.queue for k in known.values()] + [int(p["queue"]) for p in plan.placements.values()], default=0)
    order = queue_order([QueueItem(t.key, t.text, [x.strip() for x in t.data["labels"].split(",")],
                                   list(t.generators), t.data["errors"], t.data["warnings"],
                                   [c.check for c in t.checks]) for t in rest], settings.audit_size, seed)
    for item, position, audit in order:
        placed[item.key] = {"queue": start + position, "audit": audit, "risk": item.risk,
                            "risk_reasons": ", ".join(item.reasons)}
    return placed


def push_level(ls: LabelStudio, project_id: int, level: Level, tasks: list[ReviewTask], settings: ReviewSettings,
               seed: str, plan: Optional[QueuePlan] = None,
               progress: Optional[LevelProgress] = None) -> tuple[int, int, int, int, int]:
    """Import new segments in bulk, in review-queue order; a changed draft of a known segment becomes a new
    prediction on its task, sent in bulk, and a known task whose draft checks changed shows the new ones (its
    place in the queue stays). Annotations are never touched, so a reviewer's work survives any number of
    pushes; a segment is new when no task of the project has its key, so a push cut off part-way and run again
    sends only what Label Studio does not hold. Returns (created, new predictions, unchanged, audited, flags
    updated)."""
    plan, progress = plan or QueuePlan(), progress or LevelProgress()
    known = known_tasks(ls, project_id, level)
    fresh = [t for t in tasks if t.key not in known]
    placed = place(fresh, known, plan, settings, seed)
    if fresh:
        plan.save(placed)
    queued = sorted(fresh, key=lambda t: placed[t.key]["queue"])
    for task in queued:
        task.data.update(placed[task.key])
    changed = [{"task": known[t.key].id, "result": t.result, "model_version": t.model_version} for t in tasks
               if t.key in known and known[t.key].draft_sha != draft_sha(t.result)]
    reflagged = [t for t in tasks if t.key in known and known[t.key].flags != t.data["flags"]]
    progress.new, progress.changed, progress.reflagged = len(fresh), len(changed), len(reflagged)
    for i in range(0, len(queued), settings.batch_size):
        batch = queued[i:i + settings.batch_size]
        ls.import_tasks(project_id, [t.payload() for t in batch])
        progress.sent += len(batch)
    plan.done()
    for i in range(0, len(changed), settings.batch_size):
        batch = changed[i:i + settings.batch_size]
        ls.import_predictions(project_id, batch)
        progress.predicted += len(batch)
    for task in reflagged:  # a task's data is replaced whole: keep its queue fields
        ls.update_task_data(known[task.key].id, {**task.data, **known[task.key].placed})
        progress.updated += 1
    audited = sum(1 for t in fresh if placed[t.key]["audit"])
    return len(fresh), len(changed), len(tasks) - len(fresh) - len(changed), audited, len(reflagged)


def push(ws: Workspace, ls: LabelStudio, settings: ReviewSettings, lock_wait_s: float = 0) -> PushReport:
    """Send the drafts of every video in the store to their level's project."""
    with ws.lock("review push", lock_wait_s):
        return _push(ws, ls, settings)


def review_tasks(ws: Workspace, settings: ReviewSettings) -> dict[Level, list[ReviewTask]]:
    """Every finished video's review tasks; their media (events with context, playable videos) cut
    `media_workers` videos at a time (resumed: build-hivau's review-media shards usually cut them already)."""
    doc_root = document_root(ws, settings)

    def of_video(item: VideoItem) -> dict[Level, list[ReviewTask]]:
        tables = Tables.of([item])
        media = prepare_review_media(ws, tables, settings.event_context_s)
        return build_tasks(tables, media, lambda p: media_url(p, ws.media, doc_root))

    out: dict[Level, list[ReviewTask]] = {"clip": [], "event": [], "video": []}
    with ThreadPoolExecutor(settings.media_workers) as pool:
        for tasks in pool.map(of_video, ws.iter_videos()):
            for level, rows in tasks.items():
                out[level] += rows
    return out


def _push(ws: Workspace, ls: LabelStudio, settings: ReviewSettings) -> PushReport:
    doc_root = document_root(ws, settings)
    tasks = review_tasks(ws, settings)
    storage = {"clip": ws.media_dir("clip"), "event": ws.media_dir("review"), "video": ws.media_dir("video")}
    report = PushReport(url=ls.conn.url)
    progress: dict[str, LevelProgress] = {}
    try:
        for level in settings.levels:
            progress[level] = LevelProgress()
            pid = ensure_project(ls, ws, settings, level, storage[level], doc_root)
            created, changed, same, audited, reflagged = push_level(
                ls, pid, level, tasks[level], settings, f"{ws.root.name}:{level}",
                QueuePlan.load(ws, level, ls.conn.url, pid), progress[level])
            report.flags_updated[level] = reflagged
            report.projects[level], report.created[level] = pid, created
            report.new_predictions[level], report.unchanged[level], report.audit[level] = changed, same, audited
    except LabelStudioError as exc:
        raise LabelStudioError(stopped_message(ls.conn.url, settings.levels, progress, exc)) from exc
    report.requests = ls.requests
    return report


def stopped_message(url: str, levels: list[Level], progress: dict[str, LevelProgress], exc: Exception) -> str:
    """One line: what failed, what Label Studio had confirmed by then, what the workspace holds, how to resume."""
    done = "; ".join(f"{level}: {progress[level]}" if level in progress else f"{level}: not started"
                     for level in levels)
    return (f"review push to {url} stopped: {exc}. Done before the stop: {done}. The workspace is unchanged (but "
            f"for state/review_push/, the queue places of the tasks still to send). To resume, push again (`hivau "
            f"review push` or build-hivau): it finds what Label Studio holds by segment key and sends only the rest.")


def push_proposals(ws: Workspace, ls: LabelStudio, settings: ReviewSettings, proposals: dict[str, list],
                   model_version: str) -> dict[str, int]:
    """Add each unannotated video's proposed spans to its video task, as a prediction beside its drafts.

    The video tasks must exist (push first). Returns video id -> spans sent; a video whose latest
    prediction already carries the same spans gets no new one.
    """
    fps = {it.video_id: it.probe.fps for it in ws.iter_videos(proposals) if it.probe is not None}
    doc_root = document_root(ws, settings)
    pid = ensure_project(ls, ws, settings, "video", ws.media_dir("video"), doc_root)
    tasks = {task_key("video", t.get("data") or {}): t for t in ls.iter_tasks(pid, include=TASK_FIELDS)}
    sent = {}
    for video_id, spans in proposals.items():
        task = tasks.get(segment_key("video", video_id))
        if task is None or video_id not in fps:
            continue
        frames = [seconds_to_frames(p.start_s, p.end_s, fps[video_id]) for p in spans]
        last = latest_prediction(task)
        drafts = [r for r in (last["result"] if last else []) if r.get("from_name") != PROPOSALS]
        result = drafts + (proposal_timeline(frames) if frames else [])
        if last is not None and content_of(last["result"]) == content_of(result):
            continue
        ls.create_prediction(task["id"], result, model_version)
        sent[video_id] = len(frames)
    return sent
