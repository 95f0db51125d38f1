"""`sync-reviews`, `publish-release` and `retrain`: the review and release half of the data engine."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from hivau.tasks.release import ReleaseSettings, build_release, verify_release
from hivau.tasks.retrain import RetrainSettings, register_if_not_worse, run_training
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
          f"{report.reviews_unmatched} reviews no longer match a segment (kept: manifests/reviews_unmatched); "
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


@task(cache_policy=NO_CACHE)
def train_model(release: str, out: str, settings: RetrainSettings) -> str:
    """Run hivau-train in its own process(es), streaming its log lines; returns the model folder."""
    logger = get_run_logger()
    return run_training(Path(release), Path(out), settings, log=lambda line: logger.info("%s", line))


@task(cache_policy=NO_CACHE)
def evaluate_model(model: str, release: str, out: str, batch_size: int) -> dict:
    from hivau.models.evaluate import evaluate

    return evaluate(model, release, out, batch_size=batch_size)


@flow(name="retrain", log_prints=True)
def retrain(release: Annotated[str, Field(description="release folder (from the hivau.release.published event)")],
            settings: RetrainSettings = RetrainSettings()) -> dict:
    """Train on a release, evaluate on its test split beside the current model, register if not worse."""
    from hivau.models.evaluate import metrics_rows, metrics_table
    from hivau.models.registry import current_model

    manifest = verify_release(release)
    release_path = Path(release).resolve()
    models_dir = Path(settings.models_dir) if settings.models_dir else release_path.parent.parent / "models"
    name = f"{manifest['name']}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    run_dir = models_dir / "runs" / name
    model = train_model(str(release_path), str(run_dir), settings)
    metrics = evaluate_model(model, str(release_path), model, settings.eval_batch_size)
    previous = current_model(models_dir)
    before = None
    if previous:  # judged on this release's test split, not on the one it was trained for
        before = evaluate_model(previous["path"], str(release_path), str(run_dir / "previous_eval"),
                                settings.eval_batch_size)
    ok, reasons = register_if_not_worse(models_dir, name, model, manifest, release_path, metrics, previous, before,
                                        settings.tolerance)
    create_table_artifact(metrics_rows(metrics), key="retrain-metrics",
                          description=f"model {name} on release {manifest['name']} (test split)")
    create_markdown_artifact(f"# retrain {name}\n\n**{'registered' if ok else 'not registered'}**: "
                             f"{'; '.join(reasons)}\n\n" + metrics_table(metrics, before), key="retrain-report")
    print(f"retrain: model {name} {'registered' if ok else 'NOT registered'} ({'; '.join(reasons)}); "
          f"headline {metrics['headline']}")
    return {"release": manifest["name"], "path": str(release_path), "model": model, "registered": ok,
            "reasons": reasons, "headline": metrics["headline"], "trained": True,
            "content_sha256": manifest["content_sha256"]}
