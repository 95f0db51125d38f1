"""The served deployment, started with `prefect deployment run build-hivau/local` on a real Prefect server."""

import json

import pytest
from helpers import prefect_cli, served_deployments

pytestmark = pytest.mark.prefect_server


def test_prefect_deployment_run_builds_the_demo(prefect_server, demo_dir, tmp_path):
    env = prefect_server["env"]
    with served_deployments(env, "build-hivau/local", tmp_path / "serve.log"):
        params = {"videos_dir": str(demo_dir / "videos"), "annotations": str(demo_dir / "annotations.json"),
                  "format": "hivau", "workspace": str(tmp_path / "ws"), "cut_mode": "accurate"}
        run = prefect_cli(env, "deployment", "run", "build-hivau/local", "--params", json.dumps(params), "--watch",
                       "--watch-timeout", "500", timeout=560)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "Completed" in run.stdout
    summary = json.loads((tmp_path / "ws/manifests/summary.json").read_text())
    assert summary["videos_processed"] == 8 and summary["events"] == 9
    assert sorted(p.name for p in (tmp_path / "ws/media/events").glob("*.mp4"))[:2] == [
        "demo_collision_000_E0.mp4", "demo_explosion_000_E0.mp4"]

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

    with temporary_settings(updates={PREFECT_API_URL: prefect_server["url"]}):
        with get_client(sync_client=True) as client:  # this deployment run and its subflow, not the session's others
            deployment = client.read_deployment_by_name("build-hivau/local")
            (parent,) = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
            children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id])))
            assert [c.name for c in children] and all(len(json.dumps(c.parameters)) < 10_000 for c in children)
            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[parent.id, *(c.id for c in children)])))
    kinds = {a.key: a for a in artifacts if a.key}
    assert {"build-hivau-summary", "build-hivau-progress"} <= set(kinds)
    assert kinds["build-hivau-progress"].data == 100.0
    table = json.loads(kinds["build-hivau-summary"].data) if isinstance(kinds["build-hivau-summary"].data, str) \
        else kinds["build-hivau-summary"].data
    assert {"metric": "videos_processed", "value": 8, "workspace": 8} in table
