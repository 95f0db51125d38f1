"""`publish-release`: the next immutable release, announced with the event that starts `retrain`."""

from __future__ import annotations

import time
from typing import Annotated

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.sorting import FlowRunSort
from pydantic import Field

from hivau.stopping import stop_on_signals
from hivau.tasks.release.publish import ReleaseSettings, announce_release, build_release, verify_release
from hivau.workspace import Workspace


@flow(name="publish-release", log_prints=True)
def publish_release(
    workspace: Annotated[str, Field(description="workspace with merged manifests")],
    release: ReleaseSettings = ReleaseSettings(),
) -> str:
    """Write the next immutable release folder and announce it (event `hivau.release.published`)."""
    with stop_on_signals():  # a cancelled run leaves no release folder: it is written aside and renamed whole
        path = build_release(Workspace.at(workspace), release)
    manifest = verify_release(path)
    counts = manifest["counts"]
    create_markdown_artifact((path / "README.md").read_text(), key="hivau-release",
                             description=f"release {manifest['name']}")
    announce_release(path, manifest)
    print(f"release {manifest['name']} at {path}: {counts['rows']} rows "
          f"({counts['rows_by_split']}), provenance {counts['rows_by_provenance']}")
    return str(path)


def wait_for_retrain(release: str, timeout_s: float = 300) -> dict:
    """Wait for the `retrain` run that the release's event started; returns its id, state and parameters."""
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
