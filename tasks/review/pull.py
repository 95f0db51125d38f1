"""Pull: every submitted annotation of every level, stored verbatim in the workspace (an export snapshot per level,
streamed to disk and read one task at a time), and the merge rule recorded; `hivau.tasks.manifests` merges them."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from hivau.tasks.review.labelstudio import LabelStudio, LabelStudioError, iter_json_array
from hivau.tasks.review.merge import save_rule
from hivau.tasks.review.projects import ReviewSettings
from hivau.tasks.review.results import parse_annotation
from hivau.workspace import Workspace


class PullReport(BaseModel):
    annotations_seen: dict[str, int] = Field(default_factory=dict)
    new_or_changed: dict[str, int] = Field(default_factory=dict)
    # filled by the merge that follows the pull
    tables_rewritten: list[str] = Field(default_factory=list)
    recut: list[str] = Field(default_factory=list)
    provenance: dict[str, int] = Field(default_factory=dict)
    reviews_unmatched: int = 0  # "N reviews no longer match a segment" (kept, listed in reviews_unmatched)
    requests: int = 0


def pull(ws: Workspace, ls: LabelStudio, settings: ReviewSettings) -> PullReport:
    """Fetch every annotation of every level (an export snapshot each, streamed to disk and read one task at a
    time), store new or changed ones and record the merge rule; the caller holds the workspace lock and re-merges
    the tables (`hivau.tasks.manifests.pull_and_merge`). Every level is fetched before anything is stored, so a
    Label Studio that goes away part-way leaves the workspace as it was."""
    report = PullReport()
    snapshots = fetch_snapshots(ws, ls, settings)
    try:
        for level, (title, path) in snapshots.items():
            report.annotations_seen[level], report.new_or_changed[level] = store_snapshot(ws, level, title, path)
    finally:
        for _, path in snapshots.values():
            path.unlink(missing_ok=True)  # scratch copies: the store holds what counts
    save_rule(ws, settings.rule)
    report.requests = ls.requests
    return report


def fetch_snapshots(ws: Workspace, ls: LabelStudio, settings: ReviewSettings) -> dict[str, tuple[str, Path]]:
    """level -> (project title, its export on disk), for every level with a project: all of them, or an error
    that says what failed and that nothing was stored."""
    out: dict[str, tuple[str, Path]] = {}
    try:
        titles = {p["title"]: p["id"] for p in ls.projects()}
        for level in settings.levels:
            title = settings.project_title(ws, level)
            if title in titles:
                out[level] = title, ls.export_to_file(titles[title], ws.export_snapshot(level),
                                                      wait_s=settings.export_wait_s)
    except LabelStudioError as exc:
        for _, path in out.values():
            path.unlink(missing_ok=True)
        raise LabelStudioError(f"review pull from {ls.conn.url} stopped: {exc}. Levels fetched before the stop: "
                               f"{', '.join(out) or 'none'}; nothing was stored: the workspace is unchanged. To "
                               f"resume, pull again (`hivau review pull` or sync-reviews): it fetches every "
                               f"annotation anew.") from exc
    return out


def store_snapshot(ws: Workspace, level: str, title: str, path: Path) -> tuple[int, int]:
    """Store each annotation of one level's export (a file each, written whole); returns (seen, new or changed)."""
    seen = changed = 0
    for task in iter_json_array(path):
        if "item_id" not in (task.get("data") or {}):
            continue
        for annotation in task.get("annotations") or []:
            seen += 1
            changed += ws.put_review(parse_annotation(level, task, annotation, title))
    return seen, changed
