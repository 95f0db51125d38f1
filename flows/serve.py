"""Serve the project's deployments against the configured Prefect API.

`build-hivau/local`, `sync-reviews/local`, `publish-release/local`, `propose-events/local`, and
`retrain/local`, which a deployment trigger starts whenever a `hivau.release.published` event arrives.
"""

from __future__ import annotations

from prefect import serve
from prefect.events import DeploymentEventTrigger

from hivau.flows.build import build_hivau
from hivau.flows.propose import propose_events_flow
from hivau.flows.release import publish_release
from hivau.flows.retrain import retrain
from hivau.flows.review import sync_reviews
from hivau.tasks.release.publish import RELEASE_EVENT
from hivau.tasks.release.retrain_policy import RetrainSettings

DEPLOYMENT_NAME = "local"


def retrain_trigger() -> DeploymentEventTrigger:
    return DeploymentEventTrigger(name="retrain-on-release", expect={RELEASE_EVENT},
                                  parameters={"release": "{{ event.payload.path }}"})


def main() -> None:
    serve(
        build_hivau.to_deployment(name=DEPLOYMENT_NAME, description="Build HIVAU-style manifests and media",
                                  tags=["hivau"]),
        sync_reviews.to_deployment(name=DEPLOYMENT_NAME, tags=["hivau"],
                                   description="Pull Label Studio reviews into a workspace (give it a schedule "
                                               "with `prefect deployment set-schedule` to sync continuously)"),
        publish_release.to_deployment(name=DEPLOYMENT_NAME, tags=["hivau"], description="Publish the next release"),
        retrain.to_deployment(name=DEPLOYMENT_NAME, tags=["hivau"], triggers=[retrain_trigger()],
                              parameters={"settings": RetrainSettings.from_env().model_dump()},
                              description="Retrain on a release; started by hivau.release.published"),
        propose_events_flow.to_deployment(name=DEPLOYMENT_NAME, tags=["hivau"],
                                          description="Scorer proposals on unannotated videos, sent for review"),
    )


if __name__ == "__main__":
    main()
