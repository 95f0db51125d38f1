"""Serve the project's deployments (`build-hivau/local`) against the configured Prefect API."""

from __future__ import annotations

from prefect import serve

from hivau.flows.build import build_hivau

DEPLOYMENT_NAME = "local"


def main() -> None:
    serve(build_hivau.to_deployment(name=DEPLOYMENT_NAME, description="Build HIVAU-style manifests and media",
                                    tags=["hivau"]))


if __name__ == "__main__":
    main()
