"""Review round trip against a real Label Studio: push, annotate through its API, pull, merge, release."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from hivau.review_ui_config import load_config
from hivau.tasks.labelstudio import Connection, LabelStudio, LabelStudioError
from hivau.tasks.release import ReleaseSettings, build_release, verify_release
from hivau.tasks.review import (
    ReviewSettings, connect, frames_to_seconds, media_url, pull, push, seconds_to_frames,
)
from hivau.workspace import Workspace

pytestmark = pytest.mark.prefect_server


def client(ls) -> LabelStudio:
    return LabelStudio(Connection(ls["url"], SecretStr(ls["token"])))


def settings(ls, **kw) -> ReviewSettings:
    return ReviewSettings(enabled="on", url=ls["url"], document_root=str(ls["document_root"]), **kw)


def tasks_by_item(lsc: LabelStudio, ws: Workspace, st: ReviewSettings, level: str) -> dict[str, dict]:
    pid = {p["title"]: p["id"] for p in lsc.projects()}[st.project_title(ws, level)]
    return {t["data"]["item_id"]: t for t in lsc.iter_tasks(pid)}


def annotate(lsc: LabelStudio, task: dict, verdict: str, edits: dict[str, str] = {}, timeline=None) -> dict:
    """Submit an annotation the way the editor does: the prediction's regions, some edited, plus a verdict."""
    result = []
    for region in task["predictions"][-1]["result"]:
        region = {k: region[k] for k in ("from_name", "to_name", "type", "value")}
        if region["type"] == "textarea" and region["from_name"] in edits:
            region["value"] = {"text": [edits[region["from_name"]]]}
        if region["type"] == "timelinelabels" and timeline:
            region["value"] = {"ranges": [{"start": timeline[0], "end": timeline[1]}], "timelinelabels": ["event"]}
        result.append(region)
    result.append({"from_name": "verdict", "to_name": "video", "type": "choices", "value": {"choices": [verdict]}})
    return lsc.create_annotation(task["id"], result)


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- pure parts
def test_frame_arithmetic_round_trips():
    for fps in (25.0, 30.0, 29.97):
        for start, end in ((0.0, 1.0), (2.4, 7.6), (10.0, 10.04)):
            f0, f1 = seconds_to_frames(start, end, fps)
            s, e = frames_to_seconds(f0, f1, fps)
            assert abs(s - start) <= 0.5 / fps and abs(e - end) <= 0.5 / fps
    assert seconds_to_frames(0.0, 1.0, 25.0) == (1, 25)  # Label Studio counts frames from 1


def test_reclip_clamps_clips_into_corrected_bounds_and_drops_the_rest():
    from hivau.schemas.records import Clip
    from hivau.tasks.merge import reclip

    clips = [Clip(video_id="v", index=j, start_s=2.0 * j, end_s=2.0 * j + 2, clip_id=f"v_E0C{j}", event_id="v_E0")
             for j in range(3)]
    kept, touched = reclip(clips, 1.0, 5.0)
    assert [(c.start_s, c.end_s) for c in kept] == [(1.0, 2.0), (2.0, 4.0), (4.0, 5.0)]
    assert touched == {"v_E0C0", "v_E0C2"} and kept[1].provenance is None
    assert {c.provenance for c in kept if c.clip_id in touched} == {"boundaries_corrected"}
    kept, touched = reclip(clips, 2.5, 3.5)
    assert [(c.clip_id, c.start_s, c.end_s) for c in kept] == [("v_E0C1", 2.5, 3.5)]
    assert touched == {"v_E0C0", "v_E0C1", "v_E0C2"}


def test_media_outside_the_workspace_media_folder_is_refused(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    (ws.media / "clips").mkdir(parents=True)
    assert media_url(ws.media / "clips" / "a b.mp4", ws.media, tmp_path) == "/data/local-files/?d=ws/media/clips/a%20b.mp4"
    for outside in (tmp_path / "elsewhere.mp4", ws.media / ".." / "state" / "x.mp4", Path("/etc/passwd")):
        with pytest.raises(ValueError, match="outside the workspace media folder"):
            media_url(outside, ws.media, tmp_path)


def test_down_or_slow_label_studio_fails_clearly_after_bounded_retries(tmp_path, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "secret-token-123")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with pytest.raises(LabelStudioError, match="does not answer /health"):
        connect(ReviewSettings(enabled="on", url=f"http://127.0.0.1:{dead}", max_attempts=2))
    lsc = LabelStudio(Connection(f"http://127.0.0.1:{dead}", SecretStr("secret-token-123")), max_attempts=3,
                      backoff_s=0.05)
    with pytest.raises(LabelStudioError, match="after 3 attempts") as err:
        lsc.projects()
    assert "secret-token-123" not in str(err.value) and lsc.requests == 3

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(3)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        slow = LabelStudio(Connection(f"http://127.0.0.1:{server.server_port}", SecretStr("t")), timeout_s=0.3,
                           max_attempts=2, backoff_s=0.05)
        t0 = time.monotonic()
        with pytest.raises(LabelStudioError, match="ReadTimeout"):
            slow.projects()
        assert time.monotonic() - t0 < 5
    finally:
        server.shutdown()


# ---------------------------------------------------------------- against the real server
def test_review_configs_are_validated_by_label_studio(label_studio):
    lsc = client(label_studio)
    for level in ("clip", "event", "video"):
        project = lsc.create_project(f"config check {level}", load_config(level))
        assert project["id"] > 0
    broken = load_config("clip").replace('toName="video"', 'toName="nothing"', 1)
    with pytest.raises(LabelStudioError, match="HTTP 400"):
        lsc.create_project("config check broken", broken)


def test_push_is_idempotent_and_a_changed_draft_becomes_a_new_prediction(label_studio, fresh_workspace):
    ws, st, lsc = Workspace.at(fresh_workspace), settings(label_studio), client(label_studio)
    first = push(ws, lsc, st)
    n_clips, n_events = len(ws.read_records("clips")), len(ws.read_records("events"))
    assert first.created == {"clip": n_clips, "event": n_events, "video": len(ws.read_records("videos"))}
    again = push(ws, lsc, st)
    assert again.created == {"clip": 0, "event": 0, "video": 0}
    assert again.new_predictions == {"clip": 0, "event": 0, "video": 0}
    clips = tasks_by_item(lsc, ws, st, "clip")
    assert len(clips) == n_clips  # nothing duplicated

    # a reviewer works on one clip; then the build re-drafts that clip's caption
    reviewed_id = next(i for i, t in clips.items() if t["predictions"][-1]["result"])
    annotation = annotate(lsc, clips[reviewed_id], "accept", {"caption": "the reviewer's caption"})
    item = ws.get_video(clips[reviewed_id]["data"]["video_id"])  # the store holds the build's drafts
    for c in item.captions:
        if c.item_id == reviewed_id:
            c.text = "a newer machine draft"
    ws.put_video(item)

    third = push(ws, lsc, st)
    assert third.created["clip"] == 0 and third.new_predictions["clip"] == 1
    task = tasks_by_item(lsc, ws, st, "clip")[reviewed_id]
    assert [p["result"][0]["value"]["text"][0] for p in sorted(task["predictions"], key=lambda p: p["id"])][-1] == \
        "a newer machine draft"
    assert len(task["predictions"]) == 2
    (kept,) = task["annotations"]
    assert kept["id"] == annotation["id"] and kept["result"][0]["value"]["text"] == ["the reviewer's caption"]


def test_reviews_reach_the_release_exactly(label_studio, fresh_workspace, prefect_api, demo_dir):
    ws, st, lsc = Workspace.at(fresh_workspace), settings(label_studio), client(label_studio)
    push(ws, lsc, st)
    clips, events, videos = (tasks_by_item(lsc, ws, st, lvl) for lvl in ("clip", "event", "video"))
    with_caption = sorted(i for i, t in clips.items() if t["predictions"][-1]["result"])
    accepted_clip, edited_clip, rejected_clip = with_caption[:3]
    anomalous = sorted(i for i, t in events.items() if t["data"]["labels"] not in ("none", "Normal"))
    edited_event, moved_event = anomalous[0], anomalous[1]
    video_id = events[edited_event]["data"]["video_id"]
    assert events[moved_event]["data"]["video_id"] != video_id

    annotate(lsc, clips[accepted_clip], "accept")
    annotate(lsc, clips[edited_clip], "accept", {"caption": "A person in grey walks to the left, then stops."})
    annotate(lsc, clips[rejected_clip], "reject")
    annotate(lsc, events[edited_event], "accept", {"description": "Two people fight near the door.",
                                                    "a_why": "Because one person attacks the other."})
    data = events[moved_event]["data"]
    f0, f1 = seconds_to_frames(data["start_s"] - data["offset_s"], data["end_s"] - data["offset_s"], data["fps"])
    annotate(lsc, events[moved_event], "accept", timeline=(f0 + 25, f1))  # start one second later
    annotate(lsc, videos[video_id], "accept")

    report = pull(ws, lsc, st)
    assert report.new_or_changed == {"clip": 3, "event": 2, "video": 1}
    captions = {c.item_id: c for c in ws.read_records("captions")}
    assert captions[accepted_clip].provenance == "accepted"
    assert captions[edited_clip].provenance == "edited"
    assert captions[edited_clip].text == "A person in grey walks to the left, then stops."
    assert captions[rejected_clip].provenance == "rejected"
    summaries = {s.item_id: s for s in ws.read_records("summaries")}
    assert summaries[edited_event].provenance == "edited"
    assert summaries[edited_event].description == "Two people fight near the door."
    assert summaries[video_id].provenance == "accepted"
    qa = {(q.item_id, q.qa_type): q for q in ws.read_records("qa")}
    assert qa[(edited_event, "why")].answer == "Because one person attacks the other."
    assert qa[(edited_event, "why")].provenance == "edited" and qa[(edited_event, "who")].provenance == "accepted"

    # the moved boundary: event re-cut on the new times, its texts marked for regeneration
    event = {e.event_id: e for e in ws.read_records("events")}[moved_event]
    assert event.provenance == "boundaries_corrected"
    assert abs(event.start_s - (data["start_s"] + 1.0)) < 0.05 and moved_event in report.recut
    assert abs(event.cut_start_s - event.start_s) < 0.05
    assert summaries[moved_event].provenance == "boundaries_corrected"
    assert {q.provenance for (i, _), q in qa.items() if i == moved_event} == {"boundaries_corrected"}

    # a second pull with nothing new changes nothing on disk
    before = file_hashes(ws.manifests)
    again = pull(ws, lsc, st)
    assert again.new_or_changed == {"clip": 0, "event": 0, "video": 0} and again.tables_rewritten == []
    assert file_hashes(ws.manifests) == before

    release = build_release(ws, ReleaseSettings())
    verify_release(release)
    rows = pq.read_table(release / "data" / "train.parquet").to_pylist() + \
        pq.read_table(release / "data" / "test.parquet").to_pylist()
    assert {r["provenance"] for r in rows} <= {"human", "accepted", "edited"}
    reviewed = {r["item_id"] for r in rows if r["provenance"] in ("accepted", "edited")}
    assert reviewed == {accepted_clip, edited_clip, edited_event, video_id}
    answers = {(r["item_id"], r["task"], r["qa_type"]): r["answer"] for r in rows}
    assert answers[(edited_clip, "caption", None)] == "A person in grey walks to the left, then stops."
    assert answers[(edited_event, "description", None)] == "Two people fight near the door."
    assert answers[(edited_event, "qa", "why")] == "Because one person attacks the other."
    assert not {rejected_clip, moved_event} & {r["item_id"] for r in rows}

    drafts_too = build_release(ws, ReleaseSettings(include_unreviewed=True))
    rows = pq.read_table(drafts_too / "data" / "train.parquet").to_pylist() + \
        pq.read_table(drafts_too / "data" / "test.parquet").to_pylist()
    assert "auto_draft" in {r["provenance"] for r in rows}
    assert not {rejected_clip, moved_event} & {r["item_id"] for r in rows}

    # a re-run of the build keeps every reviewed word and the corrected boundary
    from hivau.flows.build import build_hivau

    build_hivau(videos_dir=str(demo_dir / "videos"), annotations=str(demo_dir / "annotations.json"),
                workspace=str(ws.root), review={"enabled": "off"})
    captions = {c.item_id: c for c in ws.read_records("captions")}
    assert captions[edited_clip].text == "A person in grey walks to the left, then stops."
    # the rejected clip stays rejected, or is gone with the part of the event the reviewer cut away
    assert rejected_clip not in captions or captions[rejected_clip].provenance == "rejected"
    rebuilt = {e.event_id: e for e in ws.read_records("events")}[moved_event]
    assert abs(rebuilt.start_s - event.start_s) < 1e-6 and rebuilt.provenance == "boundaries_corrected"


def test_build_pushes_for_review_and_the_key_never_leaks(label_studio, fresh_workspace, demo_dir, prefect_api,
                                                         monkeypatch, capfd, caplog):
    """build-hivau's push task, configured only through the environment; the token appears nowhere."""
    import logging

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter

    from hivau.flows.build import build_hivau

    token = label_studio["token"]
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio["url"])
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", token)
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(label_studio["document_root"]))
    caplog.set_level(logging.DEBUG)
    state = build_hivau(videos_dir=str(demo_dir / "videos"), annotations=str(demo_dir / "annotations.json"),
                        workspace=str(fresh_workspace), return_state=True)
    assert state.is_completed()
    ws = Workspace.at(fresh_workspace)
    lsc = client(label_studio)
    st = ReviewSettings()
    assert len(tasks_by_item(lsc, ws, st, "event")) == len(ws.read_records("events"))
    release = build_release(ws, ReleaseSettings(include_unreviewed=True))

    with get_client(sync_client=True) as prefect:
        logs = prefect.read_logs(log_filter=LogFilter(flow_run_id={"any_": [state.state_details.flow_run_id]}))
        artifacts = prefect.read_artifacts()
    texts = [log.message for log in logs] + [str(a.data) for a in artifacts] + [caplog.text] + list(capfd.readouterr())
    assert not [t for t in texts if token in t]
    for folder in (ws.root, release):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in (".json", ".parquet", ".jsonl", ".md", ".svg"):
                assert token.encode() not in path.read_bytes(), path
