"""Human review: drafts go to Label Studio as predictions, annotations come back and are merged into the tables.

Plain functions over the workspace; `flows/review.py` and the CLI are thin layers on top. The store holds the
build's drafts; `manifests/` holds them merged with every pulled annotation, so a re-run of `build-hivau` or
a re-pull can always rebuild the merged tables and never loses a reviewer's words. A task, and so its
annotations, belongs to a segment by its video and its times (`key`), never by its position.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Optional
from urllib.parse import quote

from pydantic import BaseModel, Field

from hivau.review_ui_config import SUMMARY_CONTROLS, load_config
from hivau.schemas.item import Tables, VideoItem
from hivau.schemas.records import Generator, Level, QAPair, ReviewedText, ReviewRecord, Summary, segment_key
from hivau.tasks.audit import QueueItem, queue_order
from hivau.tasks.labelstudio import Connection, LabelStudio, LabelStudioError, iter_json_array
from hivau.tasks.merge import ReviewRule, merge_workspace, save_rule
from hivau.tasks.review_media import ReviewMedia, prepare_review_media
from hivau.workspace import LEVELS, Workspace

# Text that passed a person: the only text a release takes by default.
REVIEWED = ("human", "accepted", "edited")


class ReviewSettings(BaseModel):
    enabled: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: push when a Label Studio is configured (LABEL_STUDIO_URL and a key)")
    url: Optional[str] = Field(None, description="Label Studio address; default: LABEL_STUDIO_URL")
    api_key_block: Optional[str] = Field(None, description="Prefect Secret block with the API key; default: "
                                                           "LABEL_STUDIO_API_KEY")
    document_root: Optional[str] = Field(
        None, description="the server's LOCAL_FILES_DOCUMENT_ROOT; default: LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, "
                          "else the workspace's media folder")
    dataset: Optional[str] = Field(None, description="project title part; default: the workspace folder's name")
    project_prefix: str = "hivau"
    levels: list[Level] = Field(default_factory=lambda: list(LEVELS))
    batch_size: int = Field(1000, ge=1, le=20000, description="tasks or predictions per bulk request")
    event_context_s: float = Field(5.0, ge=0, description="seconds shown before and after an event, so that "
                                                          "its boundaries can be moved outwards")
    annotations_per_task: int = Field(1, ge=1, le=10, description="reviewers per task (Label Studio's "
                                                                  "maximum_annotations): 2 or more for overlap")
    rule: ReviewRule = Field(default_factory=ReviewRule, description="which annotation counts when several exist")
    audit_size: int = Field(50, ge=0, description="new tasks per level and push put first in the queue as a random "
                                                  "audit sample (its outcomes estimate the unreviewed drafts)")
    media_workers: int = Field(2, ge=1, description="review media cut in parallel before a push")
    export_wait_s: float = Field(3600.0, gt=0, description="how long a pull waits for an export snapshot")
    timeout_s: float = Field(60.0, gt=0)
    max_attempts: int = Field(4, ge=1)

    def configured(self) -> bool:
        return bool((self.url or os.environ.get("LABEL_STUDIO_URL"))
                    and (self.api_key_block or os.environ.get("LABEL_STUDIO_API_KEY")))

    def should_push(self) -> bool:
        return self.enabled == "on" or (self.enabled == "auto" and self.configured())

    def project_title(self, ws: Workspace, level: Level) -> str:
        """`{prefix} {dataset} {level} review`, kept within Label Studio's 50 characters."""
        dataset = self.dataset or ws.root.name
        room = 50 - len(f"{self.project_prefix}  {level} review")
        if len(dataset) > room:  # shortened, with a hash so that two long names stay apart
            dataset = dataset[:room - 7] + "~" + hashlib.sha256(dataset.encode()).hexdigest()[:6]
        return f"{self.project_prefix} {dataset} {level} review"


def connect(settings: ReviewSettings) -> LabelStudio:
    """A client for the configured server; the key comes from a Prefect Secret block or the environment."""
    key = None
    if settings.api_key_block:
        from prefect.blocks.system import Secret

        key = Secret.load(settings.api_key_block).get()
    ls = LabelStudio(Connection.from_env(settings.url, key), timeout_s=settings.timeout_s,
                     max_attempts=settings.max_attempts)
    if not ls.health():
        ls.close()
        raise LabelStudioError(f"Label Studio at {ls.conn.url} does not answer /health")
    return ls


# ---------------------------------------------------------------- time and path arithmetic (pure)
def seconds_to_frames(start_s: float, end_s: float, fps: float) -> tuple[int, int]:
    """Label Studio's timeline counts frames from 1; frame n shows [(n-1)/fps, n/fps)."""
    first = int(round(start_s * fps)) + 1
    return first, max(first, int(round(end_s * fps)))


def frames_to_seconds(start_frame: float, end_frame: float, fps: float) -> tuple[float, float]:
    return (start_frame - 1) / fps, end_frame / fps


def media_url(path: Path, media_root: Path, document_root: Path) -> str:
    """The `/data/local-files/` URL of a workspace media file; anything outside media/ is refused."""
    path, media_root, document_root = (Path(p).resolve() for p in (path, media_root, document_root))
    if not path.is_relative_to(media_root):
        raise ValueError(f"refusing to serve {path}: it is outside the workspace media folder {media_root}")
    if not path.is_relative_to(document_root):
        raise ValueError(f"{path} is outside Label Studio's LOCAL_FILES_DOCUMENT_ROOT {document_root}")
    return f"/data/local-files/?d={quote(path.relative_to(document_root).as_posix())}"


def document_root(ws: Workspace, settings: ReviewSettings) -> Path:
    root = settings.document_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    return Path(root).resolve() if root else ws.media


# ---------------------------------------------------------------- drafts as Label Studio results
def textarea(name: str, text: Optional[str]) -> list[dict]:
    if not text:
        return []
    return [{"from_name": name, "to_name": "video", "type": "textarea", "value": {"text": [text]}}]


def timeline(start_frame: int, end_frame: int) -> list[dict]:
    return [{"from_name": "anomaly", "to_name": "video", "type": "timelinelabels",
             "value": {"ranges": [{"start": start_frame, "end": end_frame}], "timelinelabels": ["event"]}}]


def model_version(generators: Iterable[Generator]) -> str:
    """`backend:model@prompt` of every generator behind a draft, so reviewers see what wrote it."""
    names = {g.backend + (f":{g.model}" if g.model and g.backend != "human" else "")
             + (f"@{g.prompt_version}" if g.prompt_version else "") for g in generators}
    return " + ".join(sorted(names)) or "none"


PROPOSALS = "proposals"  # the video config's TimelineLabels for the scorer's proposed anomalous spans


def proposal_timeline(spans_frames: list[tuple[int, int]]) -> list[dict]:
    return [{"from_name": PROPOSALS, "to_name": "video", "type": "timelinelabels",
             "value": {"ranges": [{"start": a, "end": b} for a, b in spans_frames], "timelinelabels": ["anomaly"]}}]


def canonical(result: list[dict]) -> str:
    """A result's content without Label Studio's region ids, for comparing a draft with a prediction.
    The scorer's proposals are left out: they are added beside the drafts, not part of them."""
    return content_of(result, skip=(PROPOSALS,))


def content_of(result: list[dict], skip: tuple[str, ...] = ()) -> str:
    slim = sorted((r["from_name"], r["type"], json.dumps(r["value"], sort_keys=True)) for r in result
                  if r.get("from_name") not in skip)
    return json.dumps(slim)


def draft_sha(result: list[dict]) -> str:
    """A draft's content hash (what a reviewer saw), without Label Studio's region ids."""
    return hashlib.sha256(canonical(result).encode()).hexdigest()[:16]


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

    def payload(self) -> dict:
        return {"data": self.data, "predictions": [{"model_version": self.model_version, "result": self.result}]}


def summary_result(summary: Optional[Summary], pairs: list[QAPair]) -> list[dict]:
    result = []
    if summary:
        result += textarea("summary", summary.text)
        for name in SUMMARY_CONTROLS[1:]:
            result += textarea(name, getattr(summary, name))
    for pair in pairs:
        result += textarea(f"q_{pair.qa_type}", pair.question) + textarea(f"a_{pair.qa_type}", pair.answer)
    return result


def build_tasks(tables: Tables, media: dict[str, ReviewMedia], url_for) -> dict[Level, list[ReviewTask]]:
    """One review task per clip, event and video that has media, with its drafts as the prediction."""
    videos = {v.video_id: v for v in tables.videos}
    captions = {c.item_id: c for c in tables.captions}
    summaries = {s.item_id: s for s in tables.summaries}
    qa: dict[str, list[QAPair]] = {}
    for pair in tables.qa:
        qa.setdefault(pair.item_id, []).append(pair)
    out: dict[Level, list[ReviewTask]] = {"clip": [], "event": [], "video": []}

    def add(level: Level, item_id: str, video_id: str, labels: list[str], m: ReviewMedia, start: float, end: float,
            result: list[dict], drafts: list, text: str) -> None:
        key = segment_key(level, video_id, start, end)
        data = {"item_id": item_id, "key": key, "video_id": video_id, "labels": ", ".join(labels) or "none",
                "video": url_for(m.path), "fps": m.fps, "offset_s": m.offset_s, "start_s": start, "end_s": end,
                "draft_sha": draft_sha(result)}
        out[level].append(ReviewTask(item_id, level, key, data, result, model_version([d.generator for d in drafts]),
                                     text, tuple(d.generator.backend for d in drafts)))

    for clip in tables.clips:
        if clip.clip_id in media:
            cap = captions.get(clip.clip_id)
            add("clip", clip.clip_id, clip.video_id, clip.labels, media[clip.clip_id], clip.start_s, clip.end_s,
                textarea("caption", cap.text if cap else None), [cap] if cap else [], cap.text if cap else "")
    for event in tables.events:
        m = media.get(event.event_id)
        if m is None:
            continue
        s, pairs = summaries.get(event.event_id), qa.get(event.event_id, [])
        frames = seconds_to_frames(event.start_s - m.offset_s, event.end_s - m.offset_s, m.fps)
        add("event", event.event_id, event.video_id, event.labels, m, event.start_s, event.end_s,
            timeline(*frames) + summary_result(s, pairs), ([s] if s else []) + pairs, s.text if s else "")
    for video_id, video in videos.items():
        m = media.get(video_id)
        if m is None:
            continue
        s, pairs = summaries.get(video_id), qa.get(video_id, [])
        add("video", video_id, video_id, video.labels, m, 0.0, video.duration_s, summary_result(s, pairs),
            ([s] if s else []) + pairs, s.text if s else "")
    return out


def task_key(level: Level, data: dict) -> Optional[str]:
    """The segment a Label Studio task shows (tasks pushed before keys existed: from their times)."""
    if data.get("key"):
        return data["key"]
    if "video_id" not in data:
        return None
    if level == "video":
        return segment_key("video", data["video_id"])
    if data.get("start_s") is None or data.get("end_s") is None:
        return None
    return segment_key(level, data["video_id"], data["start_s"], data["end_s"])


# ---------------------------------------------------------------- push
class PushReport(BaseModel):
    projects: dict[str, int] = Field(default_factory=dict)
    created: dict[str, int] = Field(default_factory=dict)
    new_predictions: dict[str, int] = Field(default_factory=dict)
    unchanged: dict[str, int] = Field(default_factory=dict)
    audit: dict[str, int] = Field(default_factory=dict)  # new tasks put in the audit sample
    requests: int = 0
    url: str = ""


QUEUE_VIEW = "hivau review queue"


def ensure_project(ls: LabelStudio, ws: Workspace, settings: ReviewSettings, level: Level,
                   storage_dir: Path, doc_root: Path) -> int:
    """Find the level's project by title or create it (with a local-files storage on its media folder and a
    Data Manager tab that orders tasks by the review queue)."""
    title = settings.project_title(ws, level)
    found = [p for p in ls.projects() if p["title"] == title]
    project = found[0] if found else ls.create_project(
        title, load_config(level), description=f"hivau {level}-level review of {ws.root}",
        annotations_per_task=settings.annotations_per_task)
    storage_dir.mkdir(parents=True, exist_ok=True)
    media_url(storage_dir / "x", ws.media, doc_root)  # refuses a folder outside media/ before telling the server
    if not any(Path(s["path"]).resolve() == storage_dir.resolve() for s in ls.local_storages(project["id"])):
        ls.add_local_storage(project["id"], str(storage_dir.resolve()), f"hivau {level} media")
    if not any((v.get("data") or {}).get("title") == QUEUE_VIEW for v in ls.views(project["id"])):
        ls.create_view(project["id"], QUEUE_VIEW, ["tasks:data.queue"])
    return project["id"]


TASK_FIELDS = "id,data,predictions"  # what a push reads of a known task


def latest_prediction(task: dict) -> Optional[dict]:
    predictions = [p for p in task.get("predictions") or [] if isinstance(p, dict)]
    return max(predictions, key=lambda p: p["id"]) if predictions else None


def known_tasks(ls: LabelStudio, project_id: int, level: Level) -> dict[str, tuple[int, Optional[str], int]]:
    """segment key -> (task id, hash of its latest prediction, highest queue position), listed page by page;
    only these small tuples are kept, whatever the project's size."""
    out = {}
    for task in ls.iter_tasks(project_id, include=TASK_FIELDS):
        key = task_key(level, task.get("data") or {})
        if key is None:
            continue
        last = latest_prediction(task)
        queue = int((task.get("data") or {}).get("queue") or 0)
        out[key] = (task["id"], draft_sha(last["result"]) if last else None, queue)
    return out


def push_level(ls: LabelStudio, project_id: int, level: Level, tasks: list[ReviewTask], settings: ReviewSettings,
               seed: str) -> tuple[int, int, int, int]:
    """Import new segments in bulk, in review-queue order; a changed draft of a known segment becomes a new
    prediction on its task, sent in bulk. Annotations are never touched, so a reviewer's work survives any
    number of pushes. Returns (created, new predictions, unchanged, audited)."""
    known = known_tasks(ls, project_id, level)
    fresh = [t for t in tasks if t.key not in known]
    start = max((q for _, _, q in known.values()), default=0)
    order = queue_order([QueueItem(t.key, t.text, [x.strip() for x in t.data["labels"].split(",")],
                                   list(t.generators)) for t in fresh], settings.audit_size, seed)
    by_key = {t.key: t for t in fresh}
    queued = []
    for item, position, audit in order:
        task = by_key[item.key]
        task.data.update(queue=start + position, audit=audit, risk=item.risk, risk_reasons=", ".join(item.reasons))
        queued.append(task)
    for i in range(0, len(queued), settings.batch_size):
        ls.import_tasks(project_id, [t.payload() for t in queued[i:i + settings.batch_size]])
    changed = [{"task": known[t.key][0], "result": t.result, "model_version": t.model_version} for t in tasks
               if t.key in known and known[t.key][1] != draft_sha(t.result)]
    for i in range(0, len(changed), settings.batch_size):
        ls.import_predictions(project_id, changed[i:i + settings.batch_size])
    audited = sum(1 for _, _, a in order if a)
    return len(fresh), len(changed), len(tasks) - len(fresh) - len(changed), audited


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
    storage = {"clip": ws.media / "clips", "event": ws.review_media("x").parent, "video": ws.video_media("x").parent}
    report = PushReport(url=ls.conn.url)
    for level in settings.levels:
        pid = ensure_project(ls, ws, settings, level, storage[level], doc_root)
        created, changed, same, audited = push_level(ls, pid, level, tasks[level], settings,
                                                    f"{ws.root.name}:{level}")
        report.projects[level], report.created[level] = pid, created
        report.new_predictions[level], report.unchanged[level], report.audit[level] = changed, same, audited
    report.requests = ls.requests
    return report


# ---------------------------------------------------------------- pull
def _user_id(completed_by) -> Optional[int]:
    """The export gives the annotator as an id; the task API as a user object."""
    return completed_by.get("id") if isinstance(completed_by, dict) else completed_by


def _seen_draft(task: dict, annotation: dict) -> tuple[Optional[int], Optional[str]]:
    """The prediction the editor was pre-filled with, and its content hash when the task still has it."""
    parent = annotation.get("parent_prediction")
    if isinstance(parent, dict):
        parent = parent.get("id")
    for p in task.get("predictions") or []:
        if isinstance(p, dict) and p.get("id") == parent and isinstance(p.get("result"), list):
            return parent, draft_sha(p["result"])
    return parent, None


def parse_annotation(level: Level, task: dict, annotation: dict, project: str) -> ReviewRecord:
    """One annotation as a ReviewRecord, verbatim: its texts, the span it was shown, and event boundaries only
    when the reviewer moved them."""
    data = task["data"]
    texts, verdict, start, end, spans = [], None, None, None, []
    for r in annotation.get("result") or []:
        value = r.get("value") or {}
        if r.get("type") == "textarea":
            text = " ".join(s.strip() for s in value.get("text") or [] if s.strip())
            texts.append(ReviewedText(name=r["from_name"], text=text))
        elif r.get("type") == "choices" and r.get("from_name") == "verdict" and value.get("choices"):
            verdict = value["choices"][0]
        elif r.get("type") == "timelinelabels" and r.get("from_name") == PROPOSALS and value.get("ranges"):
            for x in value["ranges"]:
                a, b = frames_to_seconds(x["start"], x["end"], float(data["fps"]))
                spans.append([round(a + float(data["offset_s"]), 6), round(b + float(data["offset_s"]), 6)])
        elif r.get("type") == "timelinelabels" and value.get("ranges"):
            first = min(x["start"] for x in value["ranges"])
            last = max(x["end"] for x in value["ranges"])
            s, e = frames_to_seconds(first, last, float(data["fps"]))
            start, end = s + float(data["offset_s"]), e + float(data["offset_s"])
    if start is not None:
        half_frame = 0.5 / float(data["fps"])
        if abs(start - data["start_s"]) <= half_frame and abs(end - data["end_s"]) <= half_frame:
            start = end = None  # unchanged
    prediction_id, seen_sha = _seen_draft(task, annotation)
    return ReviewRecord(item_id=data["item_id"], level=level, video_id=data["video_id"], project=project,
                        task_id=task["id"], annotation_id=annotation["id"],
                        seen_start_s=None if level == "video" else data.get("start_s"),
                        seen_end_s=None if level == "video" else data.get("end_s"),
                        prediction_id=prediction_id, draft_sha=seen_sha, verdict=verdict, texts=texts,
                        start_s=None if start is None else round(start, 6),
                        end_s=None if end is None else round(end, 6),
                        events=sorted(spans), completed_by=_user_id(annotation.get("completed_by")),
                        created_at=str(annotation.get("created_at") or ""),
                        updated_at=str(annotation.get("updated_at") or ""), lead_time_s=annotation.get("lead_time"),
                        was_cancelled=bool(annotation.get("was_cancelled")), audit=bool(data.get("audit")),
                        result_json=json.dumps(annotation.get("result") or [], ensure_ascii=False))


class PullReport(BaseModel):
    annotations_seen: dict[str, int] = Field(default_factory=dict)
    new_or_changed: dict[str, int] = Field(default_factory=dict)
    tables_rewritten: list[str] = Field(default_factory=list)
    recut: list[str] = Field(default_factory=list)
    provenance: dict[str, int] = Field(default_factory=dict)
    reviews_unmatched: int = 0  # "N reviews no longer match a segment" (kept, listed in reviews_unmatched)
    requests: int = 0


def pull(ws: Workspace, ls: LabelStudio, settings: ReviewSettings, lock_wait_s: float = 0) -> PullReport:
    """Fetch every annotation of every level (an export snapshot each, streamed to disk and read one task at a
    time), store new or changed ones, record the merge rule, re-merge the tables."""
    with ws.lock("review pull", lock_wait_s):
        return _pull(ws, ls, settings)


def _pull(ws: Workspace, ls: LabelStudio, settings: ReviewSettings) -> PullReport:
    report = PullReport()
    titles = {p["title"]: p["id"] for p in ls.projects()}
    for level in settings.levels:
        title = settings.project_title(ws, level)
        if title not in titles:
            continue
        path = ls.export_to_file(titles[title], ws.state / "exports" / f"{level}.json", wait_s=settings.export_wait_s)
        seen = changed = 0
        for task in iter_json_array(path):
            if "item_id" not in (task.get("data") or {}):
                continue
            for annotation in task.get("annotations") or []:
                seen += 1
                changed += ws.put_review(parse_annotation(level, task, annotation, title))
        path.unlink()  # a scratch copy: the store holds what counts
        report.annotations_seen[level], report.new_or_changed[level] = seen, changed
    save_rule(ws, settings.rule)
    merged = merge_workspace(ws, settings.rule)
    report.tables_rewritten, report.recut, report.provenance = merged.tables_rewritten, merged.recut, merged.provenance
    report.reviews_unmatched = merged.summary.reviews_unmatched
    report.requests = ls.requests
    return report


# ---------------------------------------------------------------- scorer proposals
def push_proposals(ws: Workspace, ls: LabelStudio, settings: ReviewSettings, proposals: dict[str, list],
                   model_version: str) -> dict[str, int]:
    """Add each unannotated video's proposed spans to its video task, as a prediction beside its drafts.

    The video tasks must exist (push first). Returns video id -> spans sent; a video whose latest
    prediction already carries the same spans gets no new one.
    """
    fps = {it.video_id: it.probe.fps for it in ws.iter_videos(proposals) if it.probe is not None}
    doc_root = document_root(ws, settings)
    pid = ensure_project(ls, ws, settings, "video", ws.video_media("x").parent, doc_root)
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
