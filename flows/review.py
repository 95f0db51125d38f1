"""`sync-reviews`, `publish-release` and `retrain`: the review and release half of the data engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from hivau.tasks.release import ReleaseSettings, build_release, verify_release
from hivau.tasks.review import PullReport, PushReport, ReviewSettings, connect, pull, push
from hivau.workspace import Workspace

RELEASE_EVENT = "hivau.release.published"


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
        return pull(Workspace.at(workspace), ls, settings)


@flow(name="sync-reviews", log_prints=True)
def sync_reviews(
    workspace: Annotated[str, Field(description="the build-hivau workspace whose drafts are under review")],
    review: ReviewSettings = ReviewSettings(enabled="on"),
) -> dict:
    """Pull the reviewers' annotations from Label Studio and merge them into the workspace's tables."""
    report = pull_reviews(workspace, review)
    rows = [{"level": level, "annotations": n, "new_or_changed": report.new_or_changed.get(level, 0)}
            for level, n in report.annotations_seen.items()]
    create_table_artifact(rows, key="sync-reviews", description=f"reviews pulled into {workspace}")
    print(f"reviews: {report.annotations_seen} annotations, {report.new_or_changed} new or changed; "
          f"tables rewritten: {report.tables_rewritten or 'none'}; re-cut: {report.recut or 'none'}")
    return report.model_dump()


def emit_release_event(path: Path, manifest: dict) -> None:
    """Tell Prefect a release exists; the `retrain` deployment's trigger listens for this event."""
    from prefect.events import emit_event

    emit_event(event=RELEASE_EVENT,
               resource={"prefect.resource.id": f"hivau.release.{manifest['content_sha256'][:16]}",
                         "prefect.resource.name": manifest["name"], "hivau.release.path": str(path)},
               payload={"path": str(path), "name": manifest["name"], "rows": manifest["counts"]["rows"],
                        "previous": manifest["previous"]})


@flow(name="publish-release", log_prints=True)
def publish_release(
    workspace: Annotated[str, Field(description="workspace with merged manifests")],
    release: ReleaseSettings = ReleaseSettings(),
) -> str:
    """Write the next immutable release folder and announce it (event `hivau.release.published`)."""
    path = build_release(Workspace.at(workspace), release)
    manifest = verify_release(path)
    counts = manifest["counts"]
    create_markdown_artifact((path / "README.md").read_text(), key="hivau-release",
                             description=f"release {manifest['name']}")
    emit_release_event(path, manifest)
    print(f"release {manifest['name']} at {path}: {counts['rows']} rows "
          f"({counts['rows_by_split']}), provenance {counts['rows_by_provenance']}")
    return str(path)


def wait_for_retrain(release: str, timeout_s: float = 300) -> dict:
    """Wait for the `retrain` run that the release's event started; returns its id, state and parameters."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.time() + timeout_s
    with get_client(sync_client=True) as client:
        while time.time() < deadline:
            runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["retrain"])),
                                         sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=20)
            mine = [r for r in runs if str(r.parameters.get("release")) == str(release)]
            if mine and mine[0].state and mine[0].state.is_final():
                return {"id": str(mine[0].id), "state": mine[0].state.type.value, "parameters": mine[0].parameters,
                        "deployment_id": str(mine[0].deployment_id)}
            time.sleep(1)
    raise TimeoutError(f"no finished retrain run for {release} within {timeout_s:.0f} s")


@flow(name="retrain", log_prints=True)
def retrain(release: Annotated[str, Field(description="release folder (from the hivau.release.published event)")]) -> dict:
    """Started by each published release. Until the trainer lands it validates the release and reports it."""
    manifest = verify_release(release)
    counts = manifest["counts"]
    rows = [{"metric": "release", "value": manifest["name"]}, {"metric": "rows", "value": counts["rows"]}]
    rows += [{"metric": f"rows:{k}", "value": v} for k, v in sorted(counts["rows_by_split"].items())]
    rows += [{"metric": f"provenance:{k}", "value": v} for k, v in sorted(counts["rows_by_provenance"].items())]
    create_table_artifact(rows, key="retrain-report", description=f"release {manifest['name']} validated")
    print(f"retrain: release {manifest['name']} verified ({len(manifest['files'])} files, {counts['rows']} rows); "
          "no trainer is installed yet, so nothing was trained")
    return {"release": manifest["name"], "path": str(Path(release).resolve()), "rows": counts["rows"],
            "files": len(manifest["files"]), "trained": False, "content_sha256": manifest["content_sha256"]}
