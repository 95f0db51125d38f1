"""Review settings, the connection to Label Studio, and one project per level with its storage and queue view."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal, Optional
from urllib.parse import quote

from pydantic import BaseModel, Field

from hivau.review_ui_config import load_config
from hivau.schemas.records import Level
from hivau.tasks.review.labelstudio import Connection, LabelStudio, LabelStudioError
from hivau.tasks.review.merge import ReviewRule
from hivau.workspace import LEVELS, Workspace


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
        raise LabelStudioError(f"Label Studio at {ls.conn.url} does not answer /health: nothing was sent and the "
                               f"workspace is unchanged; start it (or fix LABEL_STUDIO_URL) and run again")
    return ls


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


QUEUE_VIEW = "hivau review queue"
# what the queue tab shows a lead, to sort and filter by: the item, its level, audit or not, its flags, its risk
QUEUE_COLUMNS = ("tasks:data.queue", "tasks:data.item_id", "tasks:data.level", "tasks:data.labels", "tasks:data.audit",
                 "tasks:data.errors", "tasks:data.warnings", "tasks:data.checks", "tasks:data.risk",
                 "tasks:data.risk_reasons", "tasks:total_annotations", "tasks:completed_at")
# Label Studio's other columns, and task data a lead does not sort by, hidden in that tab
QUEUE_HIDDEN = ("tasks:id", "tasks:inner_id", "tasks:cancelled_annotations", "tasks:total_predictions",
                "tasks:annotators", "tasks:annotations_results", "tasks:annotations_ids", "tasks:predictions_score",
                "tasks:predictions_model_versions", "tasks:predictions_results", "tasks:file_upload",
                "tasks:storage_filename", "tasks:created_at", "tasks:updated_at", "tasks:updated_by",
                "tasks:avg_lead_time", "tasks:draft_exists", "tasks:data.video", "tasks:data.fps",
                "tasks:data.offset_s", "tasks:data.draft_sha", "tasks:data.key", "tasks:data.flags",
                "tasks:data.video_id", "tasks:data.start_s", "tasks:data.end_s", "tasks:comment_count",
                "tasks:unresolved_comment_count", "tasks:comment_authors", "tasks:reviewed", "tasks:reviewers",
                "tasks:reviews_accepted", "tasks:reviews_rejected", "tasks:ground_truth", "tasks:annotations_count")


def ensure_project(ls: LabelStudio, ws: Workspace, settings: ReviewSettings, level: Level,
                   storage_dir: Path, doc_root: Path) -> int:
    """Find the level's project by title or create it (with a local-files storage on its media folder and a
    Data Manager tab that orders tasks by the review queue); a found project's labeling config is brought up to
    this version's."""
    title = settings.project_title(ws, level)
    found = [p for p in ls.projects() if p["title"] == title]
    project = found[0] if found else ls.create_project(
        title, load_config(level), description=f"hivau {level}-level review of {ws.root}",
        annotations_per_task=settings.annotations_per_task)
    if found and ls.label_config(project["id"]).strip() != load_config(level).strip():
        # a project made by an earlier hivau gets this one's fields (the reasoning chain); Label Studio refuses a
        # config that drops a field its annotations use, and hivau's configs only ever add fields
        ls.update_project(project["id"], label_config=load_config(level))
    storage_dir.mkdir(parents=True, exist_ok=True)
    media_url(storage_dir / "x", ws.media, doc_root)  # refuses a folder outside media/ before telling the server
    if not any(Path(s["path"]).resolve() == storage_dir.resolve() for s in ls.local_storages(project["id"])):
        ls.add_local_storage(project["id"], str(storage_dir.resolve()), f"hivau {level} media")
    if not any((v.get("data") or {}).get("title") == QUEUE_VIEW for v in ls.views(project["id"])):
        ls.create_view(project["id"], QUEUE_VIEW, ["tasks:data.queue"], QUEUE_HIDDEN)
    return project["id"]
