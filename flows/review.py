"""`sync-reviews`, `publish-release` and `retrain`: the review and release half of the data engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

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


class RetrainSettings(BaseModel):
    """How `retrain` trains and judges a model; the deployment's defaults come from $HIVAU_RETRAIN_SETTINGS."""

    preset: Optional[Literal["tiny"]] = Field("tiny", description="tiny: small models built in-process (CPU)")
    config: Optional[str] = Field(None, description="a hivau-train config file (YAML/JSON) instead of the preset")
    preset_options: dict = Field(default_factory=dict, description="e.g. {image_size: 64} for a faster tiny model")
    scorer_epochs: Optional[int] = None
    epochs: float = 30.0
    max_steps: Optional[int] = None
    max_minutes: Optional[float] = Field(20.0, description="wall-time cap of the training run")
    batch_size: int = 8
    lr: float = 1e-3
    nproc: int = Field(1, ge=1, description="processes (torchrun DDP) for training")
    models_dir: Optional[str] = Field(None, description="default: the release's workspace /models")
    tolerance: float = Field(0.01, description="a new model is registered unless a headline figure falls by more")
    eval_batch_size: int = 16

    @classmethod
    def from_env(cls) -> "RetrainSettings":
        import json
        import os

        return cls.model_validate(json.loads(os.environ.get("HIVAU_RETRAIN_SETTINGS", "{}")))


def _train_command(release: Path, out: Path, settings: RetrainSettings) -> list[str]:
    import json
    import sys

    args = ["--release", str(release), "--out", str(out)]
    if settings.config:  # the file decides the recipe; only the caps below apply on top
        args += ["--config", settings.config]
    else:
        args += ["--preset", settings.preset or "tiny", "--epochs", str(settings.epochs),
                 "--batch-size", str(settings.batch_size), "--lr", str(settings.lr)]
    args += ["--max-steps", str(settings.max_steps)] if settings.max_steps else []
    args += ["--max-minutes", str(settings.max_minutes)] if settings.max_minutes else []
    args += ["--preset-options", json.dumps(settings.preset_options)] if settings.preset_options else []
    args += ["--scorer-epochs", str(settings.scorer_epochs)] if settings.scorer_epochs is not None else []
    if settings.nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={settings.nproc}",
                "-m", "hivau.models.train", *args]
    return [sys.executable, "-m", "hivau.models.train", *args]


@task(cache_policy=NO_CACHE)
def train_model(release: str, out: str, settings: RetrainSettings) -> str:
    """Run hivau-train in its own process(es), streaming its log lines; returns the model folder."""
    import subprocess

    logger = get_run_logger()
    cmd = _train_command(Path(release), Path(out), settings)
    logger.info("training: %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-40:]
        if line.startswith("{"):
            logger.info("%s", line.rstrip())
    if proc.wait() != 0:
        raise RuntimeError(f"hivau-train exited with {proc.returncode}:\n" + "\n".join(tail))
    return str(Path(out) / "model")


@task(cache_policy=NO_CACHE)
def evaluate_model(model: str, release: str, out: str, batch_size: int) -> dict:
    from hivau.models.evaluate import evaluate

    return evaluate(model, release, out, batch_size=batch_size)


@flow(name="retrain", log_prints=True)
def retrain(release: Annotated[str, Field(description="release folder (from the hivau.release.published event)")],
            settings: RetrainSettings = RetrainSettings()) -> dict:
    """Train on a release, evaluate on its test split beside the current model, register if not worse."""
    from datetime import datetime, timezone

    from hivau.models.evaluate import metrics_rows, metrics_table, not_worse
    from hivau.models.registry import current_model, record_decision

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
    ok, reasons = not_worse(metrics["headline"], before["headline"] if before else None, settings.tolerance)
    entry = record_decision(models_dir, {"name": name, "path": model, "release": manifest["name"],
                                         "release_path": str(release_path), "headline": metrics["headline"],
                                         "previous": previous["name"] if previous else None,
                                         "previous_headline": before["headline"] if before else None,
                                         "reasons": reasons}, registered=ok)
    create_table_artifact(metrics_rows(metrics), key="retrain-metrics",
                          description=f"model {name} on release {manifest['name']} (test split)")
    create_markdown_artifact(f"# retrain {name}\n\n**{'registered' if ok else 'not registered'}**: "
                             f"{'; '.join(reasons)}\n\n" + metrics_table(metrics, before), key="retrain-report")
    print(f"retrain: model {name} {'registered' if ok else 'NOT registered'} ({'; '.join(reasons)}); "
          f"headline {metrics['headline']}")
    return {"release": manifest["name"], "path": str(release_path), "model": model, "registered": ok,
            "reasons": reasons, "headline": metrics["headline"], "trained": True,
            "content_sha256": manifest["content_sha256"]}
