"""Fault 5: Label Studio goes away during a push or a pull (a real TCP proxy in front of the real server, cut)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from typing import Optional

import pytest
from pydantic import SecretStr
from test_review import annotate
from typer.testing import CliRunner

from hivau.cli import app
from hivau.tasks.manifests import pull_and_merge
from hivau.tasks.review.labelstudio import Connection, LabelStudio, LabelStudioError
from hivau.tasks.review.projects import ReviewSettings
from hivau.tasks.review.push import QueuePlan, place, push, review_tasks
from hivau.workspace import Workspace

pytestmark = pytest.mark.prefect_server

REQUEST_LINE = re.compile(rb"^(GET|POST|PATCH|PUT|DELETE|HEAD) (\S+) HTTP/1\.[01]\r\n")


@dataclass
class Cut:
    """Where to cut: the nth request with this method and a path matching `path`."""

    method: str
    path: re.Pattern
    nth: int
    lose_answer: bool  # Label Studio gets the request and acts on it; the cut comes as its answer starts
    blip: bool  # only that connection breaks; the proxy keeps listening


class CutProxy:
    """Forwards TCP connections to Label Studio until cut: then the listener and every open connection close, so
    the client sees a broken connection, then refused ones, until `restore()`."""

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = 0
        self._cut: Optional[Cut] = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._server: Optional[socket.socket] = None
        self.cut_time = 0.0  # time.monotonic() of the last cut
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port again
        self.port = server.getsockname()[1]
        server.settimeout(0.05)  # so that the accepting thread sees a cut
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut_at(self, method: str, path: str, nth: int = 1, lose_answer: bool = False, blip: bool = False) -> None:
        with self._lock:
            self._cut = Cut(method, re.compile(path), nth, lose_answer, blip)

    def cut(self) -> None:
        self.cut_time = time.monotonic()
        with self._lock:
            server, self._server, self._cut = self._server, None, None
            socks, self._open = list(self._open), set()
        if server is not None:
            server.close()
        for s in socks:
            _close(s)

    def _accept(self, server: socket.socket) -> None:
        while self._server is server:
            try:
                client, _ = server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._server is not server:  # cut meanwhile
                    _close(client), _close(upstream)
                    return
                self._open |= {client, upstream}
            link: dict = {"doomed": None}  # the Cut whose answer this connection must not deliver
            threading.Thread(target=self._pump, args=(client, upstream, link, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, link, False), daemon=True).start()

    def _due(self, data: bytes) -> Optional[Cut]:
        """The cut, when `data` starts the request it waits for."""
        m = REQUEST_LINE.match(data)
        with self._lock:
            cut = self._cut
            if not m or cut is None or m.group(1).decode() != cut.method or not cut.path.search(m.group(2).decode()):
                return None
            cut.nth -= 1
            if cut.nth > 0:
                return None
            self._cut = None
            return cut

    def _pump(self, src: socket.socket, dst: socket.socket, link: dict, outbound: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                cut = self._due(data) if outbound else link["doomed"]
                if cut is not None and (not outbound or not cut.lose_answer):
                    return self._drop(src, dst, cut.blip)
                if cut is not None:
                    link["doomed"] = cut
                dst.sendall(data)
        except OSError:
            pass
        _close(src), _close(dst)

    def _drop(self, a: socket.socket, b: socket.socket, blip: bool) -> None:
        if not blip:
            return self.cut()
        with self._lock:
            self._open -= {a, b}
        _close(a), _close(b)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


@pytest.fixture()
def proxy(label_studio):
    p = CutProxy(int(label_studio["url"].rsplit(":", 1)[1]))
    yield p
    p.cut()


def client(url: str, token: str) -> LabelStudio:
    return LabelStudio(Connection(url, SecretStr(token)), backoff_s=0.05)


def settings(url: str, ls: dict, **kw) -> ReviewSettings:
    return ReviewSettings(enabled="on", url=url, document_root=str(ls["document_root"]), **kw)


def tasks_of(ls: dict, ws: Workspace, st: ReviewSettings, level: str) -> list[dict]:
    """A level's tasks, read past the proxy."""
    real = client(ls["url"], ls["token"])
    projects = {p["title"]: p["id"] for p in real.projects()}
    title = st.project_title(ws, level)
    return list(real.iter_tasks(projects[title])) if title in projects else []


def state_hashes(ws: Workspace) -> dict[str, str]:
    """Every file of the workspace's state and manifests (what a push or pull may change), by content."""
    out = {}
    for folder in (ws.state, ws.manifests):
        for p in sorted(folder.rglob("*")):
            if p.is_file() and "review_push" not in p.parts:
                out[p.relative_to(ws.root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def one_line_error(exc: BaseException, *parts: str) -> str:
    text = str(exc)
    assert "\n" not in text and all(p in text for p in parts), text
    return text


def test_a_push_cut_off_part_way_resumes_without_duplicates(label_studio, fresh_workspace, proxy):
    """The server goes away as it answers an import it performed; the next push sends only the rest, in the
    places and with the audit sample of a push never cut off. A lost answer to a prediction import (the
    connection breaks, the server stays up) is not sent again either."""
    ws, token = Workspace.at(fresh_workspace), label_studio["token"]
    st = settings(proxy.url, label_studio, batch_size=3, audit_size=3)
    planned = review_tasks(ws, st)  # cuts the review media first: the push below only resumes them
    n = {level: len(rows) for level, rows in planned.items()}
    before = state_hashes(ws)
    clip_batches = -(-n["clip"] // 3)
    proxy.cut_at("POST", r"/import\?", clip_batches + 2, lose_answer=True)  # the event level's 2nd import
    with pytest.raises(LabelStudioError) as err:
        push(ws, client(proxy.url, token), st)
    assert time.monotonic() - proxy.cut_time < 2  # not sent again: it stops at once
    text = one_line_error(err.value, f"review push to {proxy.url} stopped", "import of 3 tasks into project",
                          "it may have been done", f"clip: {n['clip']} of {n['clip']} new tasks",
                          f"event: 3 of {n['event']} new tasks", "video: not started", "push again")
    assert token not in text
    assert state_hashes(ws) == before  # only the queue plan of the tasks still to send was written
    plan = json.loads((ws.state / "review_push" / "event.json").read_text())
    assert len(plan["placements"]) == n["event"]
    assert len(tasks_of(label_studio, ws, st, "event")) == 6  # the lost answer's import did happen
    assert tasks_of(label_studio, ws, st, "video") == []

    proxy.restore()
    report = push(ws, client(proxy.url, token), st)
    assert report.created == {"clip": 0, "event": n["event"] - 6, "video": n["video"]}
    assert not (ws.state / "review_push" / "event.json").exists()
    uninterrupted = place(planned["event"], {}, QueuePlan(), st, f"{ws.root.name}:event")
    for level in ("clip", "event", "video"):
        tasks = tasks_of(label_studio, ws, st, level)
        assert len(tasks) == n[level] == len({t["data"]["key"] for t in tasks})  # nothing duplicated
        assert all(len(t["predictions"]) == 1 for t in tasks)
    events = {t["data"]["key"]: {k: t["data"][k] for k in ("queue", "audit")}
              for t in tasks_of(label_studio, ws, st, "event")}
    assert events == {k: {"queue": p["queue"], "audit": p["audit"]} for k, p in uninterrupted.items()}
    assert sum(e["audit"] for e in events.values()) == 3

    # changed drafts: their prediction import loses its answer on a connection that breaks once
    clips = sorted((t for t in tasks_of(label_studio, ws, st, "clip") if t["predictions"][0]["result"]),
                   key=lambda t: t["data"]["key"])[:4]
    for task in clips:
        item = ws.get_video(task["data"]["video_id"])
        for c in item.captions:
            if c.item_id == task["data"]["item_id"]:
                c.text = f"a newer draft of {c.item_id}"
        ws.put_video(item)
    st2 = st.model_copy(update={"batch_size": 2})
    proxy.cut_at("POST", r"/import/predictions", 2, lose_answer=True, blip=True)
    with pytest.raises(LabelStudioError) as err:
        push(ws, client(proxy.url, token), st2)
    one_line_error(err.value, "import of 2 predictions into project", "it may have been done",
                   "clip: 0 of 0 new tasks, 2 of 4 changed drafts")
    assert push(ws, client(proxy.url, token), st2).new_predictions == {"clip": 0, "event": 0, "video": 0}
    by_key = {t["data"]["key"]: t for t in tasks_of(label_studio, ws, st, "clip")}
    assert [len(by_key[t["data"]["key"]]["predictions"]) for t in clips] == [2, 2, 2, 2]  # not doubled


def reviews(ws: Workspace) -> list[dict]:
    return sorted((r.model_dump() for r in ws.iter_reviews()), key=lambda r: r["annotation_id"])


def test_a_pull_cut_off_part_way_stores_nothing_and_the_next_one_completes(label_studio, fresh_workspace, built_demo,
                                                                           review_root, proxy):
    """The server goes away between two levels' exports: nothing is stored, nothing merged; the next pull stores
    exactly what an uninterrupted pull of the same projects stores."""
    ws, token = Workspace.at(fresh_workspace), label_studio["token"]
    st = settings(label_studio["url"], label_studio, dataset=f"pull-{ws.root.name[-20:]}")
    real = client(label_studio["url"], token)
    push(ws, real, st)
    for level in ("clip", "event", "video"):
        for task in sorted(tasks_of(label_studio, ws, st, level), key=lambda t: t["data"]["key"])[:2]:
            annotate(real, task, "accept" if level != "event" else "reject")
    twin = Workspace.at(shutil.copytree(built_demo, review_root / f"{ws.root.name}-twin"))
    before = state_hashes(ws)

    proxy.cut_at("GET", r"/exports/\d+/download", 2)  # the event level's download
    via_proxy = st.model_copy(update={"url": proxy.url})
    with pytest.raises(LabelStudioError) as err:
        pull_and_merge(ws, client(proxy.url, token), via_proxy)
    assert time.monotonic() - proxy.cut_time < 5  # 4 attempts, a backoff of 0.05 s doubling
    text = one_line_error(err.value, f"review pull from {proxy.url} stopped", "download export",
                          "Levels fetched before the stop: clip;", "nothing was stored", "pull again")
    assert token not in text
    assert state_hashes(ws) == before and not list((ws.state / "exports").glob("*"))

    proxy.restore()
    resumed = pull_and_merge(ws, client(proxy.url, token), via_proxy)
    whole = pull_and_merge(twin, real, st)
    assert resumed.new_or_changed == whole.new_or_changed == {"clip": 2, "event": 2, "video": 2}
    assert reviews(ws) == reviews(twin) and len(reviews(ws)) == 6
    for table in ("captions", "summaries"):  # merged alike
        assert [r.model_dump() for r in ws.read_records(table)] == [r.model_dump() for r in twin.read_records(table)]
    # no export snapshot left on the server: each pull deletes its own, and the cut-off pull's went with the next
    projects = {p["title"]: p["id"] for p in real.projects()}
    for level in ("clip", "event", "video"):
        assert real.sdk.projects.exports.list(id=projects[st.project_title(ws, level)]) == []


def test_the_cli_names_the_failed_step_and_exits_non_zero(label_studio, fresh_workspace, proxy, monkeypatch):
    """No traceback: one line with the server, the step, what was done and how to resume; exit status 1."""
    token = label_studio["token"]
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", token)
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(label_studio["document_root"]))
    runner = CliRunner()
    args = ["review", "push", "--workspace", str(fresh_workspace), "--url", proxy.url, "--batch-size", "4"]

    proxy.cut_at("POST", r"/import\?", 2)  # before Label Studio sees it
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and token not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: review push to {proxy.url} stopped: import of 4 tasks into project")
    assert "it may have been done" in line and "clip: 4 of" in line and "push again" in line

    result = runner.invoke(app, args)  # still down: refused before anything is sent
    assert result.exit_code == 1 and "does not answer /health: nothing was sent" in result.output

    proxy.restore()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ws = Workspace.at(fresh_workspace)
    st = settings(proxy.url, label_studio)
    assert len(tasks_of(label_studio, ws, st, "clip")) == len(ws.read_records("clips"))

    proxy.cut_at("GET", r"/exports/\d+/download", 1)
    result = runner.invoke(app, ["review", "pull", "--workspace", str(fresh_workspace), "--url", proxy.url])
    assert result.exit_code == 1 and "Traceback" not in result.output and token not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: review pull from {proxy.url} stopped: download export") and \
        "nothing was stored" in line
