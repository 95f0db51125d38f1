"""A temporary Prefect server for a command run with no PREFECT_API_URL, that outlives the command's own work.

Prefect starts its temporary server as a child in the terminal's process group, so Ctrl-C stops the server at
once and the command then retries its queued events against it for minutes. This one runs in its own session (a
terminal's Ctrl-C does not reach it), dies with its parent (a kill -9 of hivau leaves no server behind), and is
stopped only after the command's runs have been marked and its events and logs delivered.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

import httpx

START_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux prctl PR_SET_PDEATHSIG), however it dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the server then outlives a killed parent, as Prefect's does
        pass


def start_server(port: int) -> subprocess.Popen:
    """The same uvicorn app Prefect's own temporary server runs, with its database under PREFECT_HOME."""
    import prefect
    from prefect.settings import get_current_settings

    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
           "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # no telemetry attempts from a machine offline
    args = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port), "--log-level",
            "error", "--lifespan", "on"]
    return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_die_with_parent)


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the temporary Prefect server exited with code {proc.returncode}")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"the temporary Prefect server at {url} did not answer within {timeout_s:.0f} s")


def drain_prefect_senders(timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Deliver the events and logs Prefect still holds while the server answers (else they are retried at exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout_s, at_exit=False)
        except Exception:  # a sender that cannot deliver must not keep the command from exiting
            pass


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def prefect_api() -> Iterator[str]:
    """The Prefect API the command reports to: PREFECT_API_URL when set, else a temporary server that stays up
    until the body has finished (or stopped) and its events and logs are delivered."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield PREFECT_API_URL.value()
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    print(f"hivau: starting a temporary Prefect server on {url} (set PREFECT_API_URL to report to your own)",
          file=sys.stderr)
    proc = start_server(port)
    try:
        wait_healthy(url, proc)
        before = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = url  # for worker processes (a local Dask cluster) started from here
        try:
            with temporary_settings(updates={PREFECT_API_URL: url}):
                try:
                    yield url
                finally:
                    drain_prefect_senders()
        finally:
            if before is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = before
    finally:
        stop_server(proc)
