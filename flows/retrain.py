"""`retrain`: started by every published release; trains on it, evaluates beside its untrained start and the current
model, registers it if it learned and is not worse."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from hivau.models.evaluate import evaluate, metrics_table
from hivau.models.metrics import metrics_rows
from hivau.models.registry import current_model
from hivau.tasks.release.publish import verify_release
from hivau.tasks.release.retrain_policy import (
    RetrainSettings,
    register_if_learned,
    run_training,
    untrained_settings,
)


@task(cache_policy=NO_CACHE)
def train_model(release: str, out: str, settings: RetrainSettings) -> str:
    """Run hivau-train in its own process(es), streaming its log lines; returns the model folder."""
    logger = get_run_logger()
    return run_training(Path(release), Path(out), settings, log=lambda line: logger.info("%s", line))


@task(cache_policy=NO_CACHE)
def evaluate_model(model: str, release: str, out: str, batch_size: int) -> dict:
    return evaluate(model, release, out, batch_size=batch_size)


@flow(name="retrain", log_prints=True)
def retrain(release: Annotated[str, Field(description="release folder (from the hivau.release.published event)")],
            settings: RetrainSettings = RetrainSettings()) -> dict:
    """Train on a release, evaluate on its test split beside its untrained start and the current model, register
    it if it learned and is not worse."""
    manifest = verify_release(release)
    release_path = Path(release).resolve()
    models_dir = Path(settings.models_dir) if settings.models_dir else release_path.parent.parent / "models"
    name = f"{manifest['name']}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    run_dir = models_dir / "runs" / name
    model = train_model(str(release_path), str(run_dir), settings)
    metrics = evaluate_model(model, str(release_path), model, settings.eval_batch_size)
    # the bar it must clear: the same recipe before its first step, on the same test split
    start = train_model.with_options(name="build-untrained-model")(str(release_path), str(run_dir / "untrained"),
                                                                    untrained_settings(settings))
    untrained = evaluate_model(start, str(release_path), start, settings.eval_batch_size)
    previous = current_model(models_dir)
    before = None
    if previous:  # judged on this release's test split, not on the one it was trained for
        before = evaluate_model(previous["path"], str(release_path), str(run_dir / "previous_eval"),
                                settings.eval_batch_size)
    ok, reasons = register_if_learned(models_dir, name, model, manifest, release_path, metrics, untrained, previous,
                                      before, settings.tolerance)
    create_table_artifact(metrics_rows(metrics), key="retrain-metrics",
                          description=f"model {name} on release {manifest['name']} (test split)")
    create_markdown_artifact(f"# retrain {name}\n\n**{'registered' if ok else 'not registered'}**: "
                             f"{'; '.join(reasons)}\n\nuntrained start (the same recipe, no step): "
                             f"{untrained['headline']}\n\n" + metrics_table(metrics, before), key="retrain-report")
    print(f"retrain: model {name} {'registered' if ok else 'NOT registered'} ({'; '.join(reasons)}); "
          f"headline {metrics['headline']}")
    return {"release": manifest["name"], "path": str(release_path), "model": model, "registered": ok,
            "reasons": reasons, "headline": metrics["headline"], "untrained_headline": untrained["headline"],
            "trained": True,
            "content_sha256": manifest["content_sha256"]}
