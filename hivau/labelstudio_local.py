"""Run a local Label Studio from its own virtual environment, with a generated account and API token.

The server keeps its SQLite database under the given state folder, never checks for new versions, and
serves local files only from the document root it is given (the workspace's media folder).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]


def label_studio_bin() -> Path:
    venv = Path(os.environ.get("HIVAU_LABEL_STUDIO_VENV", ROOT / ".venv-ls"))
    binary = venv / "bin" / "label-studio"
    if not binary.is_file():
        raise FileNotFoundError(f"no Label Studio at {binary}: run `make bootstrap` (it installs label-studio into "
                                f"{venv}) or set HIVAU_LABEL_STUDIO_VENV")
    return binary


def credentials(state_dir: Path) -> tuple[dict, bool]:
    """The local account: from HIVAU_LS_EMAIL / HIVAU_LS_PASSWORD / HIVAU_LS_TOKEN, else generated once and
    kept (mode 600) in state_dir/credentials.json. Returns (credentials, generated_now)."""
    path = state_dir / "credentials.json"
    if path.is_file():
        return json.loads(path.read_text()), False
    creds = {"email": os.environ.get("HIVAU_LS_EMAIL", "reviewer@hivau.local"),
             "password": os.environ.get("HIVAU_LS_PASSWORD") or secrets.token_urlsafe(12),
             "token": os.environ.get("HIVAU_LS_TOKEN") or secrets.token_hex(20)}
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds, fh)
    return creds, True


def server_env(data_dir: Path, document_root: Path, creds: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "PREFECT_"))}
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # the token below is a legacy token
        "LABEL_STUDIO_USERNAME": creds["email"], "LABEL_STUDIO_PASSWORD": creds["password"],
        "LABEL_STUDIO_USER_TOKEN": creds["token"],
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_CONVERTER_DOWNLOAD_RESOURCES": "false",
    })
    return env


def healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/health", timeout=3).status == 200
    except OSError:
        return False


def start(state_dir: Path, port: int, document_root: Path, log: Optional[Path] = None) -> tuple[subprocess.Popen, dict]:
    """Start the server in the background (its own session); returns the process and the credentials."""
    state_dir = state_dir.resolve()
    document_root.mkdir(parents=True, exist_ok=True)
    creds, _ = credentials(state_dir)
    data_dir = state_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    out = open(log or state_dir / "server.log", "ab")
    proc = subprocess.Popen(
        [str(label_studio_bin()), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir)],
        env=server_env(data_dir, document_root.resolve(), creds), stdout=out, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, creds


def wait_healthy(url: str, proc: Optional[subprocess.Popen] = None, timeout_s: float = 240) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if healthy(url):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"Label Studio exited with code {proc.returncode} before answering {url}/health")
        time.sleep(1)
    raise TimeoutError(f"Label Studio at {url} did not answer /health within {timeout_s:.0f} s")
