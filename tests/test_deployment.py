"""The served deployment, started with `prefect deployment run build-hivau/local` on a real Prefect server."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.prefect_server


def _prefect(env, *args, timeout=120):
    return subprocess.run([str(Path(sys.executable).parent / "prefect"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_prefect_deployment_run_builds_the_demo(prefect_server, demo_dir, tmp_path):
    env = prefect_server["env"]
    server = subprocess.Popen([sys.executable, "-m", "hivau.flows.serve"], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "serve.log", "w"), start_new_session=True)
    try:
        deadline = time.time() + 120
        while _prefect(env, "deployment", "inspect", "build-hivau/local").returncode != 0:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.time() < deadline, "deployment was not registered by the serve process"
            time.sleep(1)
        params = {"videos_dir": str(demo_dir / "videos"), "annotations": str(demo_dir / "annotations.json"),
                  "format": "hivau", "workspace": str(tmp_path / "ws"), "cut_mode": "accurate"}
        run = _prefect(env, "deployment", "run", "build-hivau/local", "--params", json.dumps(params), "--watch",
                       "--watch-timeout", "500", timeout=560)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "Completed" in run.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
    summary = json.loads((tmp_path / "ws/manifests/summary.json").read_text())
    assert summary["videos_processed"] == 8 and summary["events"] == 9
    assert sorted(p.name for p in (tmp_path / "ws/media/events").glob("*.mp4"))[:2] == [
        "demo_collision_000_E0.mp4", "demo_explosion_000_E0.mp4"]

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server["url"]}):
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["build-hivau-summary", "build-hivau-progress"])))
    kinds = {a.key: a for a in artifacts}
    assert {"build-hivau-summary", "build-hivau-progress"} <= set(kinds)
    table = json.loads(kinds["build-hivau-summary"].data) if isinstance(kinds["build-hivau-summary"].data, str) \
        else kinds["build-hivau-summary"].data
    assert {"metric": "videos_processed", "value": 8} in table
