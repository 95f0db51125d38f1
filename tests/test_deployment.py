"""The served deployment on a real Prefect server: a run cancelled part-way with `prefect flow-run cancel` stops its
shards and frees the workspace, and the next `build-hivau/local` run resumes and builds the demo."""

import json
import time

import pytest
from helpers import manifest_digest, prefect_cli, served_deployments

pytestmark = pytest.mark.prefect_server


def _wait_final(client, run_id, log, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while not (state := client.read_flow_run(run_id).state).is_final():
        assert time.monotonic() < deadline, f"{state}\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    return state


def test_a_cancelled_deployment_run_frees_the_workspace_and_the_next_run_builds_the_demo(
        prefect_server, demo_dir, built_demo, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from hivau.workspace import Workspace

    env, ws = prefect_server["env"], tmp_path / "ws"
    params = {"videos_dir": str(demo_dir / "videos"), "annotations": str(demo_dir / "annotations.json"),
              "format": "hivau", "workspace": str(ws), "cut_mode": "accurate", "max_workers": 1, "shard_size": 1}
    log = tmp_path / "serve.log"
    media = lambda: list((ws / "media").rglob("*.mp4")) if (ws / "media").is_dir() else []  # noqa: E731
    with served_deployments(env, "build-hivau/local", log) as server, \
            temporary_settings(updates={PREFECT_API_URL: prefect_server["url"]}), \
            get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("build-hivau/local")
        run = client.create_flow_run_from_deployment(deployment.id, parameters=params)
        deadline = time.monotonic() + 300
        while len(media()) < 2:  # cutting has begun
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        cancel = prefect_cli(env, "flow-run", "cancel", str(run.id))
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        assert _wait_final(client, run.id, log, 60).type.value == "CANCELLED"
        with Workspace.at(ws).lock("the test", wait_s=60):  # its process is gone and the lock with it
            cut_at_cancel = len(media())
        time.sleep(2)
        assert len(media()) == cut_at_cancel, "shards went on cutting after the run was cancelled"

        # the same parameters again: the run resumes and builds what an uninterrupted build does
        again = prefect_cli(env, "deployment", "run", "build-hivau/local", "--params", json.dumps(params), "--watch",
                            "--watch-timeout", "500", timeout=560)
        assert again.returncode == 0 and "Completed" in again.stdout, again.stdout[-3000:] + again.stderr[-3000:]
        (parent,) = [r for r in client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[deployment.id]))) if r.id != run.id]
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id])))
        assert [c.name for c in children] and all(len(json.dumps(c.parameters)) < 10_000 for c in children)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[parent.id, *(c.id for c in children)])))
    summary = json.loads((ws / "manifests/summary.json").read_text())
    assert summary["videos_processed"] == 8 and summary["events"] == 9
    assert sorted(p.name for p in (ws / "media/events").glob("*.mp4"))[:2] == [
        "demo_collision_000_E0.mp4", "demo_explosion_000_E0.mp4"]
    assert manifest_digest(ws) == manifest_digest(built_demo)
    kinds = {a.key: a for a in artifacts if a.key}
    assert {"build-hivau-summary", "build-hivau-progress"} <= set(kinds)
    assert kinds["build-hivau-progress"].data == 100.0
    table = json.loads(kinds["build-hivau-summary"].data) if isinstance(kinds["build-hivau-summary"].data, str) \
        else kinds["build-hivau-summary"].data
    assert {"metric": "videos_processed", "value": 8, "workspace": 8} in table
