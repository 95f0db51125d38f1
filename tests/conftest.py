"""Shared fixtures: the public fixture folder, a real local Prefect server, demo data rendered once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prefect.logging.configuration import ensure_logging_setup

# Prefect binds its console log handler to sys.stderr as it is when its logging is first set up (on first use).
# Set up inside a test that captures with capfd, that is a stream closed after the test, and every later test's
# flow logs fail on it; set up here, it is pytest's capture stream, open for the whole session.
ensure_logging_setup()

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"public fixtures not found at {FIXTURES} (they sit beside the repository in CI)")
    return FIXTURES


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Prefect server exited early:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"Prefect server not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real `prefect server start` on a free loopback port with its own SQLite database."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    log = home / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(url, proc, log)
        yield {"url": url, "home": home, "env": env}
    finally:
        # flush in-process event and log senders while the server still answers; at interpreter exit
        # they would otherwise retry against a stopped server for a minute or more
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        for worker in (APILogWorker, EventsWorker):
            try:
                worker.drain_all(timeout=15, at_exit=False)
            except Exception:
                pass
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture()
def prefect_api(prefect_server):
    """Point in-process flow runs at the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server["url"]}):
        yield prefect_server["url"]


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    from hivau.demo import write_demo

    out = tmp_path_factory.mktemp("demo")
    write_demo(out, seed=0, with_faults=True)
    return out


@pytest.fixture(scope="session")
def review_root(tmp_path_factory) -> Path:
    """The folder a test Label Studio may serve files from; review workspaces are made inside it."""
    return tmp_path_factory.mktemp("review-root")


@pytest.fixture(scope="session")
def label_studio(review_root, tmp_path_factory):
    """A real Label Studio (its own venv, SQLite in a temp folder) serving files from `review_root` only."""
    import signal

    from hivau import labelstudio_local as lsl

    try:
        lsl.label_studio_bin()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    state = tmp_path_factory.mktemp("label-studio")
    port = _free_port()
    proc, creds = lsl.start(state, port, review_root)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            lsl.wait_healthy(url, proc, timeout_s=300)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n{(state / 'server.log').read_text()[-3000:]}")
        yield {"url": url, "token": creds["token"], "email": creds["email"], "password": creds["password"],
               "document_root": review_root}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def built_demo(review_root, demo_dir, prefect_server) -> Path:
    """The demo built once by build-hivau (no review push); tests copy it with `fresh_workspace`."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from hivau.flows.build import build_hivau

    ws = review_root / "built-demo"
    with temporary_settings(updates={PREFECT_API_URL: prefect_server["url"]}):
        build_hivau(videos_dir=str(demo_dir / "videos"), annotations=str(demo_dir / "annotations.json"),
                    workspace=str(ws), review={"enabled": "off"})
    return ws


@pytest.fixture()
def fresh_workspace(built_demo, review_root, request) -> Path:
    """A private copy of the built demo workspace inside the Label Studio document root."""
    import shutil

    dst = review_root / request.node.name.replace("[", "-").replace("]", "")
    shutil.copytree(built_demo, dst)
    return dst


@pytest.fixture(scope="session")
def demo_release(built_demo, review_root) -> Path:
    """A release of the built demo (drafts included, 30% of videos held out) for the trainer's tests."""
    import shutil

    from hivau.tasks.release.publish import ReleaseSettings, build_release
    from hivau.workspace import Workspace

    ws = review_root / "trainer-demo"
    shutil.copytree(built_demo, ws)
    return build_release(Workspace.at(ws), ReleaseSettings(include_unreviewed=True, test_fraction=0.3))
