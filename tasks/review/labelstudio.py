"""Label Studio through its official client (label-studio-sdk): projects, storage, bulk import, predictions,
export snapshots streamed to disk, Data Manager views.

Every call is bounded: `max_attempts` tries, `timeout_s` each, exponential backoff between. A request that never
left (refused connection, connect timeout) and a 429 are tried again; a call that changes something (an import,
a new project or export) is never sent again once it may have reached the server (a broken connection, a read
timeout, a 5xx): the caller's next push lists what exists instead, so nothing is duplicated. The SDK's own
retries are off: it would send such a call again. Errors name the step and the server, never the token.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import httpx
from pydantic import SecretStr

log = logging.getLogger("hivau.review")
EXPORT_POLL_S = 0.5
EXPORT_TITLE = "hivau pull "  # the snapshots a pull makes, and may delete


class LabelStudioError(RuntimeError):
    """Label Studio refused a request or could not be reached; the message never holds the token."""


# the request never reached the server: sending it again cannot do anything twice
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# answers that say "try again": for a call that changes nothing; a changing call is retried on 429 only (refused
# before any work), since a 5xx from a proxy in front may come after the server did the work
RETRY_STATUS = frozenset({408, 409, 429})


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


def _plain(obj: Any) -> Any:
    """An SDK model (or a list of them) as plain JSON-like data."""
    if isinstance(obj, list):
        return [_plain(o) for o in obj]
    return obj.dict() if hasattr(obj, "dict") else obj


_MAYBE_DONE = " (it may have been done: not sent again)"


@dataclass
class LabelStudio:
    """One authenticated SDK client; `max_attempts` bounds every call, `timeout_s` each attempt.

    The SDK exchanges a personal access token (a JWT refresh token) for access tokens itself and sends a
    legacy token as it is.
    """

    conn: Connection
    timeout_s: float = 60.0
    max_attempts: int = 4
    backoff_s: float = 0.5
    requests: int = 0
    sdk: Any = field(init=False, repr=False)
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from label_studio_sdk import LabelStudio as SDK

        def count(_request: httpx.Request) -> None:
            self.requests += 1

        self._http = httpx.Client(timeout=self.timeout_s, follow_redirects=True, event_hooks={"request": [count]})
        self.sdk = SDK(base_url=self.conn.url, api_key=self.conn.api_key.get_secret_value(), httpx_client=self._http,
                       timeout=self.timeout_s, max_retries=0)  # retried here: see `_call`

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "LabelStudio":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, what: str, fn: Callable[..., Any], *args, repeatable: bool = True, **kwargs) -> Any:
        """Run one SDK call, tried again only where that cannot do it twice (see the module's docstring)."""
        from label_studio_sdk.core.api_error import ApiError

        last = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return fn(*args, **kwargs)
            except ApiError as exc:
                body = exc.body if isinstance(exc.body, str) else json.dumps(exc.body, default=str)
                last = f"HTTP {exc.status_code}: {(body or '')[:500]}"
                code = exc.status_code or 0
                if not (code == 429 or repeatable and (code in RETRY_STATUS or code >= 500)):
                    raise LabelStudioError(f"{what} failed at {self.conn.url}: {last}"
                                           + ("" if repeatable or code < 500 else _MAYBE_DONE)) from None
            except NOT_SENT as exc:
                last = f"{type(exc).__name__}: {exc}"
            except httpx.TransportError as exc:  # sent, and the answer never came (whole)
                last = f"{type(exc).__name__}: {exc}"
                if not repeatable:
                    raise LabelStudioError(f"{what} failed at {self.conn.url}: {last}{_MAYBE_DONE}") from None
            if attempt < self.max_attempts:
                time.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
        raise LabelStudioError(f"{what} failed after {self.max_attempts} attempts against {self.conn.url}: {last}")

    # ------------------------------------------------------------------ server and projects
    def health(self) -> bool:
        # the SDK has no call for /health (it is not part of the documented API)
        try:
            return self._http.get(f"{self.conn.url}/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def whoami(self) -> dict:
        return _plain(self._call("whoami", self.sdk.users.whoami))

    def projects(self) -> list[dict]:
        return [{"id": p.id, "title": p.title} for p in self._call("list projects", lambda: list(
            self.sdk.projects.list(page_size=100)))]

    def create_project(self, title: str, label_config: str, description: str = "",
                       annotations_per_task: int = 1) -> dict:
        project = self._call("create project", self.sdk.projects.create, repeatable=False, title=title,
                             label_config=label_config, description=description,
                             # predictions pre-fill the editor, so the reviewer edits the draft instead of retyping it
                             show_collab_predictions=True, evaluate_predictions_automatically=False,
                             maximum_annotations=annotations_per_task, sampling="Sequential sampling")
        return {"id": project.id, "title": project.title}

    def label_config(self, project_id: int) -> str:
        return self._call("get project", self.sdk.projects.get, id=project_id).label_config or ""

    def update_project(self, project_id: int, **fields) -> dict:
        return _plain(self._call("update project", self.sdk.projects.update, id=project_id, **fields))

    def local_storages(self, project_id: int) -> list[dict]:
        return _plain(self._call("list storages", self.sdk.import_storage.local.list, project=project_id))

    def add_local_storage(self, project_id: int, path: str, title: str) -> dict:
        return _plain(self._call("add storage", self.sdk.import_storage.local.create, repeatable=False,
                                 project=project_id, path=path, title=title, use_blob_urls=False))

    def create_view(self, project_id: int, title: str, ordering: list[str], hidden: Sequence[str] = ()) -> dict:
        """A Data Manager tab with this ordering (annotators labelling from it follow it) and these columns
        hidden, in the list and beside the labelling stream."""
        data = {"title": title, "ordering": ordering}
        if hidden:
            data["hiddenColumns"] = {"explore": list(hidden), "labeling": list(hidden)}
        return _plain(self._call("create view", self.sdk.views.create, repeatable=False, project=project_id,
                                 data=data))

    def views(self, project_id: int) -> list[dict]:
        return _plain(self._call("list views", self.sdk.views.list, project=project_id))

    # ------------------------------------------------------------------ tasks and predictions
    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        """Import one batch (with their predictions) in one request; returns the new task ids in order."""
        out = self._call(f"import of {len(tasks)} tasks into project {project_id}", self.sdk.projects.import_tasks,
                         repeatable=False, id=project_id, request=tasks, return_task_ids=True)
        return list(getattr(out, "task_ids", None) or [])

    def iter_tasks(self, project_id: int, page_size: int = 1000, include: Optional[str] = None) -> Iterator[dict]:
        """Every task of a project with its annotations and predictions, one page (one request) at a time;
        `include` ("id,data,predictions") names the only fields wanted, which halves the server's time per page."""
        page = 1
        while True:
            try:
                pager = self._call(f"list tasks of project {project_id} (page {page})", self.sdk.tasks.list,
                                   project=project_id, page=page, page_size=page_size, fields="all", include=include)
            except LabelStudioError as exc:
                if "HTTP 404" in str(exc):  # past the last page
                    return
                raise
            items = pager.items or []
            for task in items:
                yield _plain(task)
            if len(items) < page_size or not pager.has_next:
                return
            page += 1

    def update_task_data(self, task_id: int, data: dict) -> None:
        self._call(f"update task {task_id}", self.sdk.tasks.update, id=str(task_id), data=data)

    def import_predictions(self, project_id: int, predictions: list[dict]) -> int:
        """New predictions for existing tasks in one request (`{"task", "result", "model_version"}` each)."""
        out = self._call(f"import of {len(predictions)} predictions into project {project_id}",
                         self.sdk.projects.import_predictions, repeatable=False, id=project_id, request=predictions)
        return int(getattr(out, "created", None) or len(predictions))

    def create_prediction(self, task_id: int, result: list[dict], model_version: str) -> dict:
        """One prediction, one request (the per-task path the benchmark compares the bulk path with)."""
        return _plain(self._call("create prediction", self.sdk.predictions.create, repeatable=False, task=task_id,
                                 result=result, model_version=model_version))

    def create_annotation(self, task_id: int, result: list[dict], **fields) -> dict:
        return _plain(self._call("create annotation", self.sdk.annotations.create, repeatable=False, id=task_id,
                                 result=result, **fields))

    def update_annotation(self, annotation_id: int, result: list[dict]) -> dict:
        return _plain(self._call("update annotation", self.sdk.annotations.update, id=annotation_id, result=result))

    # ------------------------------------------------------------------ export snapshots
    def export_to_file(self, project_id: int, dest: Path, wait_s: float = 3600, chunk_size: int = 1 << 20) -> Path:
        """Snapshot every task with annotations, wait for it, stream it to `dest` (whole or not at all); the
        snapshot is deleted once downloaded, and those an interrupted pull left behind go with the next one."""
        self.delete_exports(project_id, [e.id for e in self._call(f"list exports of project {project_id}",
                                                                  self.sdk.projects.exports.list, id=project_id)
                                         if (e.title or "").startswith(EXPORT_TITLE)])
        snapshot = self._call(f"create export of project {project_id}", self.sdk.projects.exports.create,
                              repeatable=False, id=project_id, title=f"{EXPORT_TITLE}{time.strftime('%Y%m%dT%H%M%S')}",
                              task_filter_options={"only_with_annotations": True})
        deadline = time.monotonic() + wait_s
        while True:
            state = self._call(f"read export {snapshot.id} of project {project_id}", self.sdk.projects.exports.get,
                               id=project_id, export_pk=snapshot.id)
            status = str(getattr(state, "status", "") or "")
            if status == "completed":
                break
            if status == "failed":
                raise LabelStudioError(f"export {snapshot.id} of project {project_id} failed on the server")
            if time.monotonic() > deadline:
                raise LabelStudioError(f"export {snapshot.id} of project {project_id} not ready after {wait_s:.0f} s")
            time.sleep(EXPORT_POLL_S)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")

        def download() -> None:  # a download cut off part-way starts again from the beginning
            with open(tmp, "wb") as fh:
                for chunk in self.sdk.projects.exports.download(id=project_id, export_pk=snapshot.id,
                                                                export_type="JSON",
                                                                request_options={"chunk_size": chunk_size}):
                    fh.write(chunk)

        try:
            self._call(f"download export {snapshot.id} of project {project_id}", download)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        self.delete_exports(project_id, [snapshot.id])
        return dest

    def delete_exports(self, project_id: int, export_ids: list[int]) -> None:
        """Delete export snapshots (each a copy of the project's annotations on the server's disk); housekeeping:
        one that fails is left, with a warning, for the next pull to delete."""
        for export_id in export_ids:
            try:
                self._call(f"delete export {export_id} of project {project_id}", self.sdk.projects.exports.delete,
                           id=project_id, export_pk=export_id)
            except LabelStudioError as exc:
                log.warning("export snapshot left on the server (the next pull deletes it): %s", exc)


def iter_json_array(path: Path, chunk_size: int = 1 << 20) -> Iterator[Any]:
    """The elements of a file holding one JSON array, one at a time (an export of 70,000 tasks never sits in
    memory whole: at most one element and one read buffer do)."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as fh:
        buf, pos, started = "", 0, False
        while True:
            # skip separators; read more whenever the buffer runs out mid-way
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n,":
                    pos += 1
                if pos < len(buf):
                    break
                more = fh.read(chunk_size)
                if not more:
                    if not started:
                        raise ValueError(f"{path} is empty, not a JSON array")
                    raise ValueError(f"{path} ends before its JSON array is closed")
                buf, pos = buf[pos:] + more, 0
            if not started:
                if buf[pos] != "[":
                    raise ValueError(f"{path} does not hold a JSON array")
                started, pos = True, pos + 1
                continue
            if buf[pos] == "]":
                return
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError:
                    end = None
                if end is not None and end < len(buf) and buf[end] in " \t\r\n,]":
                    break
                # undecodable so far, or not yet followed by a separator (a number may go on): read more
                more = fh.read(chunk_size)
                if not more:
                    if end is None:
                        raise ValueError(f"{path}: broken JSON at the end of its array")
                    break
                buf, pos = buf[pos:] + more, 0
            yield value
            pos = end
