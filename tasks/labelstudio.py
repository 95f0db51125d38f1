"""A small Label Studio REST client: projects, local-files storage, batched task import, predictions, export.

Written on httpx rather than label-studio-sdk so that retries, timeouts and batching are ours and the
core does not pull the SDK in. Every call is retried a bounded number of times on connection errors,
timeouts and 5xx/429; anything else fails at once with the server's message.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import httpx
from pydantic import SecretStr


class LabelStudioError(RuntimeError):
    """Label Studio refused a request or could not be reached; `detail` never holds the token."""


@dataclass
class Connection:
    url: str
    api_key: SecretStr

    @classmethod
    def from_env(cls, url: Optional[str] = None, api_key: Optional[str] = None) -> "Connection":
        url = url or os.environ.get("LABEL_STUDIO_URL")
        key = api_key or os.environ.get("LABEL_STUDIO_API_KEY")
        if not url or not key:
            raise LabelStudioError("no Label Studio configured: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY "
                                   "(or pass a Prefect Secret block name holding the key)")
        return cls(url.rstrip("/"), SecretStr(key))


def _is_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


@dataclass
class LabelStudio:
    """One authenticated session; `max_attempts` bounds every call, `timeout_s` each attempt."""

    conn: Connection
    timeout_s: float = 60.0
    max_attempts: int = 4
    backoff_s: float = 0.5
    requests: int = 0
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.conn.url, timeout=self.timeout_s)
        token = self.conn.api_key.get_secret_value()
        # A personal access token is a JWT refresh token, exchanged for a short-lived access token;
        # a legacy token is sent as is.
        self._auth = f"Bearer {self._access_token(token)}" if _is_jwt(token) else f"Token {token}"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "LabelStudio":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _access_token(self, refresh: str) -> str:
        data = self._send("POST", "/api/token/refresh", json={"refresh": refresh}, auth=False)
        return data["access"]

    def _send(self, method: str, path: str, auth: bool = True, **kwargs) -> Any:
        headers = {"Authorization": self._auth} if auth else {}
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            self.requests += 1
            try:
                response = self._client.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:  # refused, reset, timed out: worth another try
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response.json() if response.content else None
                last = f"HTTP {response.status_code}: {response.text[:500]}"
                if response.status_code != 429 and response.status_code < 500:  # our request is wrong
                    raise LabelStudioError(f"{method} {path} failed: {last}")
            if attempt < self.max_attempts:
                time.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
        raise LabelStudioError(f"{method} {path} failed after {self.max_attempts} attempts against "
                               f"{self.conn.url}: {last}")

    # ------------------------------------------------------------------ server and projects
    def health(self) -> bool:
        try:
            return self._client.get("/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def whoami(self) -> dict:
        return self._send("GET", "/api/current-user/whoami")

    def projects(self) -> list[dict]:
        out, page = [], 1
        while True:
            data = self._send("GET", "/api/projects", params={"page": page, "page_size": 100})
            out += data["results"]
            if not data.get("next"):
                return out
            page += 1

    def create_project(self, title: str, label_config: str, description: str = "") -> dict:
        return self._send("POST", "/api/projects", json={
            "title": title, "label_config": label_config, "description": description,
            # predictions pre-fill the editor, so the reviewer edits the draft instead of retyping it
            "show_collab_predictions": True, "evaluate_predictions_automatically": False,
            "maximum_annotations": 1})

    def update_project(self, project_id: int, **fields) -> dict:
        return self._send("PATCH", f"/api/projects/{project_id}", json=fields)

    def local_storages(self, project_id: int) -> list[dict]:
        return self._send("GET", "/api/storages/localfiles", params={"project": project_id})

    def add_local_storage(self, project_id: int, path: str, title: str) -> dict:
        return self._send("POST", "/api/storages/localfiles", json={
            "project": project_id, "path": path, "title": title, "use_blob_urls": False,
            "regex_filter": None})

    # ------------------------------------------------------------------ tasks
    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        """Import one batch (with their predictions) in one request; returns the new task ids in order."""
        data = self._send("POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"},
                          json=tasks)
        return list(data.get("task_ids") or [])

    def iter_tasks(self, project_id: int, page_size: int = 1000) -> Iterator[dict]:
        """Every task of a project with its annotations and predictions, page by page."""
        page = 1
        while True:
            try:
                data = self._send("GET", "/api/tasks", params={"project": project_id, "page": page,
                                                                "page_size": page_size, "fields": "all"})
            except LabelStudioError as exc:
                if "HTTP 404" in str(exc):  # past the last page
                    return
                raise
            tasks = data["tasks"] if isinstance(data, dict) else data
            yield from tasks
            if len(tasks) < page_size:
                return
            page += 1

    def export(self, project_id: int) -> list[dict]:
        """All tasks with annotations and predictions in one request (Label Studio's JSON export)."""
        return self._send("GET", f"/api/projects/{project_id}/export",
                          params={"exportType": "JSON", "download_all_tasks": "true"})

    def create_prediction(self, task_id: int, result: list[dict], model_version: str) -> dict:
        return self._send("POST", "/api/predictions", json={"task": task_id, "result": result,
                                                             "model_version": model_version})

    def create_annotation(self, task_id: int, result: list[dict], **fields) -> dict:
        return self._send("POST", f"/api/tasks/{task_id}/annotations", json={"result": result, **fields})

    def update_annotation(self, annotation_id: int, result: list[dict]) -> dict:
        return self._send("PATCH", f"/api/annotations/{annotation_id}", json={"result": result})
