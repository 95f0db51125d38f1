"""`sync-reviews`, which pulls annotators' work from Label Studio into the workspace, and the push task that
`build-hivau` ends with."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from hivau.stopping import stop_on_signals
from hivau.tasks.manifests import pull_and_merge
from hivau.tasks.review.projects import ReviewSettings, connect
from hivau.tasks.review.pull import PullReport
from hivau.tasks.review.push import PushReport, push
from hivau.workspace import Workspace


@task(retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE)
def push_for_review(workspace: str, settings: ReviewSettings) -> PushReport:
    """Send drafts to Label Studio as predictions; idempotent, never touches annotations."""
    with connect(settings) as ls:
        report = push(Workspace.at(workspace), ls, settings)
    get_run_logger().info("pushed for review to %s: created %s, new predictions %s, unchanged %s",
                          report.url, report.created, report.new_predictions, report.unchanged)
    return report


@task(retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE)
def pull_reviews(workspace: str, settings: ReviewSettings) -> PullReport:
    with connect(settings) as ls:
        return pull_and_merge(Workspace.at(workspace), ls, settings)


@flow(name="sync-reviews", log_prints=True)
def sync_reviews(
    workspace: Annotated[str, Field(description="the build-hivau workspace whose drafts are under review")],
    review: ReviewSettings = ReviewSettings(enabled="on"),
) -> dict:
    """Pull the reviewers' annotations from Label Studio and merge them into the workspace's tables."""
    with stop_on_signals():  # a cancelled run stops at once; a pull stores nothing until every level is fetched
        report = pull_reviews(workspace, review)
    rows = [{"level": level, "annotations": n, "new_or_changed": report.new_or_changed.get(level, 0)}
            for level, n in report.annotations_seen.items()]
    create_table_artifact(rows, key="sync-reviews", description=f"reviews pulled into {workspace}")
    print(f"reviews: {report.annotations_seen} annotations, {report.new_or_changed} new or changed; "
          f"{report.reviews_unmatched} reviews no longer match a segment (kept: manifests/reviews_unmatched); "
          f"tables rewritten: {report.tables_rewritten or 'none'}; re-cut: {report.recut or 'none'}")
    return report.model_dump()
