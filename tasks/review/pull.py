"""Pull: every submitted annotation of every level, stored verbatim in the workspace (an export snapshot per level,
streamed to disk and read one task at a time), and the merge rule recorded; `hivau.tasks.manifests` merges them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from hivau.tasks.review.labelstudio import LabelStudio, iter_json_array
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
    the tables (`hivau.tasks.manifests.pull_and_merge`)."""
    report = PullReport()
    titles = {p["title"]: p["id"] for p in ls.projects()}
    for level in settings.levels:
        title = settings.project_title(ws, level)
        if title not in titles:
            continue
        path = ls.export_to_file(titles[title], ws.export_snapshot(level), wait_s=settings.export_wait_s)
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
    report.requests = ls.requests
    return report
