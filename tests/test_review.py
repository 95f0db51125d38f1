"""Review round trip against a real Label Studio: push, annotate through its API, pull, merge, release."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import re
import socket
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import annotate
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter
from pydantic import SecretStr

from hivau.flows.build import build_hivau
from hivau.review_ui_config import load_config
from hivau.schemas.records import Clip
from hivau.tasks.build.segments import split_even
from hivau.tasks.manifests import pull_and_merge
from hivau.tasks.release.publish import ReleaseSettings, build_release, verify_release
from hivau.tasks.review.audit import wilson_interval
from hivau.tasks.review.labelstudio import Connection, LabelStudio, LabelStudioError
from hivau.tasks.review.merge import ReviewRule, reclip
from hivau.tasks.review.projects import ReviewSettings, connect, media_url
from hivau.tasks.review.push import push
from hivau.tasks.review.results import frames_to_seconds, seconds_to_frames
from hivau.workspace import Workspace

pytestmark = pytest.mark.prefect_server


def client(ls) -> LabelStudio:
    return LabelStudio(Connection(ls["url"], SecretStr(ls["token"])))


def settings(ls, **kw) -> ReviewSettings:
    return ReviewSettings(enabled="on", url=ls["url"], document_root=str(ls["document_root"]), **kw)


def tasks_by_key(lsc: LabelStudio, ws: Workspace, st: ReviewSettings, level: str) -> dict[str, dict]:
    """A level's tasks by segment key (video and times)."""
    pid = {p["title"]: p["id"] for p in lsc.projects()}[st.project_title(ws, level)]
    return {t["data"]["key"]: t for t in lsc.iter_tasks(pid)}


def tasks_by_item(lsc: LabelStudio, ws: Workspace, st: ReviewSettings, level: str) -> dict[str, dict]:
    """By positional item id, the newest task of each (a re-timed segment gets a new task)."""
    tasks = sorted(tasks_by_key(lsc, ws, st, level).values(), key=lambda t: t["id"])
    return {t["data"]["item_id"]: t for t in tasks}


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


def test_a_project_made_before_chains_gains_the_chain_field(label_studio, fresh_workspace):
    """A workspace reviewed with an earlier hivau keeps its projects; a push brings their configs up to date, so
    the chains it now drafts reach the editor."""
    ws, st, lsc = Workspace.at(fresh_workspace), settings(label_studio), client(label_studio)
    current = load_config("event")
    earlier = re.sub(r'\s*<Header value="Reasoning chain[^>]*/>\s*<TextArea name="chain"[^>]*/>', "", current)
    assert 'name="chain"' not in earlier and earlier != current
    old = lsc.create_project(st.project_title(ws, "event"), earlier)
    push(ws, lsc, st)
    assert lsc.label_config(old["id"]).strip() == current.strip()
    events = tasks_by_item(lsc, ws, st, "event")
    with_chain = {i for i, t in events.items() if any(r["from_name"] == "chain" for r in t["predictions"][-1]["result"])}
    assert with_chain and with_chain == {c.item_id for c in ws.read_records("chains") if c.level == "event"}


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
    edited_annotation = annotate(lsc, clips[edited_clip], "accept",
                                 {"caption": "A person in grey walks to the left, then stops."})
    annotate(lsc, clips[rejected_clip], "reject")
    assert any(r["from_name"] == "chain" for r in events[edited_event]["predictions"][-1]["result"])
    chain = ("Perception:\nScene: Two people stand near a door.\n[1.0-2.0 s] One pushes the other.\n"
             "Cognition:\nWhat happens: They fight.\nWhy: One attacks the other.\nCause: An argument.\n"
             "Consequence: One falls.\nConclusion: An anomaly occurs: a fight.")
    annotate(lsc, events[edited_event], "accept", {"description": "Two people fight near the door.",
                                                    "a_why": "Because one person attacks the other.",
                                                    "chain": chain})
    data = events[moved_event]["data"]
    f0, f1 = seconds_to_frames(data["start_s"] - data["offset_s"], data["end_s"] - data["offset_s"], data["fps"])
    moved_annotation = annotate(lsc, events[moved_event], "accept", timeline=(f0 + 25, f1))  # start 1 s later
    annotate(lsc, videos[video_id], "accept")

    report = pull_and_merge(ws, lsc, st)
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
    chains = {c.item_id: c for c in ws.read_records("chains")}
    assert chains[edited_event].text == chain and chains[edited_event].provenance == "edited"  # line for line
    assert chains[video_id].provenance == "accepted"

    # the moved boundary: event re-cut on the new times, its texts marked for regeneration
    event = {e.event_id: e for e in ws.read_records("events")}[moved_event]
    assert event.provenance == "boundaries_corrected"
    assert abs(event.start_s - (data["start_s"] + 1.0)) < 0.05 and moved_event in report.recut
    assert abs(event.cut_start_s - event.start_s) < 0.05
    assert summaries[moved_event].provenance == "boundaries_corrected"
    assert {q.provenance for (i, _), q in qa.items() if i == moved_event} == {"boundaries_corrected"}
    assert chains[moved_event].provenance == "boundaries_corrected"

    # a second pull with nothing new changes nothing on disk
    before = file_hashes(ws.manifests)
    again = pull_and_merge(ws, lsc, st)
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
    assert answers[(edited_event, "reasoning", None)] == chain
    assert not {rejected_clip, moved_event} & {r["item_id"] for r in rows}
    # the reviewed chains think before the verifiable tasks' answers; a draft chain nobody reviewed does not
    sft = [json.loads(line) for s in ("train", "test") for line in (release / "sft/swift" / f"{s}.jsonl").open()]
    tasks = pq.read_table(release / "vau/train.parquet").to_pylist() + pq.read_table(release / "vau/test.parquet").to_pylist()
    thought = {t["item_id"] for t, row in zip(tasks, sft) if row["messages"][1]["content"].startswith("<think>")}
    assert thought == {video_id, edited_event} & {t["item_id"] for t in tasks}
    assert video_id in thought and all(f"<think>{chain}</think>" in row["messages"][1]["content"]
                                       for t, row in zip(tasks, sft) if t["item_id"] == edited_event)

    drafts_too = build_release(ws, ReleaseSettings(include_unreviewed=True))
    rows = pq.read_table(drafts_too / "data" / "train.parquet").to_pylist() + \
        pq.read_table(drafts_too / "data" / "test.parquet").to_pylist()
    assert "auto_draft" in {r["provenance"] for r in rows}
    assert not {rejected_clip, moved_event} & {r["item_id"] for r in rows}

    # a re-run of the build keeps every reviewed word and the corrected boundary
    build_hivau(videos_dir=str(demo_dir / "videos"), annotations=str(demo_dir / "annotations.json"),
                workspace=str(ws.root), review={"enabled": "off"})
    captions = {c.item_id: c for c in ws.read_records("captions")}
    assert captions[edited_clip].text == "A person in grey walks to the left, then stops."
    # the rejected clip stays rejected, or is gone with the part of the event the reviewer cut away
    assert rejected_clip not in captions or captions[rejected_clip].provenance == "rejected"
    rebuilt = {e.event_id: e for e in ws.read_records("events")}[moved_event]
    assert abs(rebuilt.start_s - event.start_s) < 1e-6 and rebuilt.provenance == "boundaries_corrected"
    assert rebuilt.corrected_by == moved_annotation["id"]
    # every text of the old span is gone: the event's summary, splits and QA are drafted again for the new span
    # (the demo's captioner only has the annotation's captions, so moved clips and the event may have none yet)
    summaries = {s.item_id: s for s in ws.read_records("summaries")}
    if moved_event in summaries:
        assert summaries[moved_event].provenance == "auto_draft" and summaries[moved_event].annotation_id is None
    assert {q.provenance for q in ws.read_records("qa") if q.item_id == moved_event} <= {"auto_draft"}
    assert all(c.provenance == "auto_draft" for c in ws.read_records("captions")
               if c.item_id.startswith(moved_event) and c.item_id in report.recut)
    release = build_release(ws, ReleaseSettings())
    rows = pq.read_table(release / "data" / "train.parquet").to_pylist() + \
        pq.read_table(release / "data" / "test.parquet").to_pylist()
    assert moved_event not in {r["item_id"] for r in rows}
    assert {r["annotation_id"] for r in rows if r["item_id"] == edited_clip} == {edited_annotation["id"]}
    # ... and they go to review: the new span is a new task with the new drafts as its prediction
    again = push(ws, lsc, st)
    assert again.created["event"] == 1
    new_task = [t for t in tasks_by_key(lsc, ws, st, "event").values() if t["data"]["item_id"] == moved_event
                and abs(t["data"]["start_s"] - rebuilt.start_s) < 1e-6]
    assert len(new_task) == 1 and new_task[0]["predictions"]


def test_build_pushes_for_review_and_the_key_never_leaks(label_studio, fresh_workspace, demo_dir, prefect_api,
                                                         monkeypatch, capfd, caplog):
    """build-hivau's push task, configured only through the environment; the token appears nowhere."""
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


def second_reviewer(lsc: LabelStudio) -> int:
    """Another annotator in the same organisation; the admin submits on their behalf, as an import would."""
    email = f"second-{time.monotonic_ns()}@hivau.local"
    user = lsc.sdk.users.create(username=email, email=email, first_name="Second", last_name="Reviewer")
    return user.id


def test_every_annotation_is_kept_and_the_declared_rule_picks_one(label_studio, fresh_workspace):
    ws, lsc = Workspace.at(fresh_workspace), client(label_studio)
    st = settings(label_studio, annotations_per_task=2)
    push(ws, lsc, st)
    clips = tasks_by_item(lsc, ws, st, "clip")
    item_id = next(i for i, t in sorted(clips.items()) if t["predictions"][-1]["result"])
    task = clips[item_id]
    first = annotate(lsc, task, "accept", {"caption": "the first reviewer's caption"})
    second = annotate(lsc, task, "accept", {"caption": "the second reviewer's caption"},
                      completed_by=second_reviewer(lsc), lead_time=12.5)

    report = pull_and_merge(ws, lsc, st)
    assert report.new_or_changed["clip"] == 2
    stored = [r for r in ws.video_reviews(task["data"]["video_id"]) if r.task_id == task["id"]]
    assert {r.annotation_id for r in stored} == {first["id"], second["id"]}
    assert len({r.completed_by for r in stored}) == 2
    assert all(r.updated_at and r.result_json != "[]" and r.seen_start_s == task["data"]["start_s"] for r in stored)
    captions = {c.item_id: c for c in ws.read_records("captions")}
    assert (captions[item_id].text, captions[item_id].annotation_id) == ("the second reviewer's caption", second["id"])

    me = lsc.whoami()["id"]
    pull_and_merge(ws, lsc, st.model_copy(update={"rule": ReviewRule(rule="precedence", precedence=[me])}))
    captions = {c.item_id: c for c in ws.read_records("captions")}
    assert (captions[item_id].text, captions[item_id].annotation_id) == ("the first reviewer's caption", first["id"])
    release = build_release(ws, ReleaseSettings())
    rows = pq.read_table(release / "data" / "train.parquet").to_pylist() + \
        pq.read_table(release / "data" / "test.parquet").to_pylist()
    assert [r["annotation_id"] for r in rows if r["item_id"] == item_id] == [first["id"]]
    assert "precedence" in (release / "README.md").read_text()


def test_a_review_stays_with_its_times_when_clips_are_planned_again(label_studio, fresh_workspace, prefect_api,
                                                                     demo_dir):
    ws, st, lsc = Workspace.at(fresh_workspace), settings(label_studio), client(label_studio)
    push(ws, lsc, st)
    clips = tasks_by_item(lsc, ws, st, "clip")
    thirds = {(e.video_id, round(s, 3), round(t, 3)) for e in ws.read_records("events")
              for s, t in split_even(e.start_s, e.end_s, 3)}
    item_id = next(i for i, t in sorted(clips.items()) if t["predictions"][-1]["result"] and re.search(r"C[012]$", i)
                   and (t["data"]["video_id"], round(t["data"]["start_s"], 3), round(t["data"]["end_s"], 3)) not in thirds)
    task = clips[item_id]  # a drafted clip whose times a plan of 3 even clips per event does not have
    annotation = annotate(lsc, task, "accept", {"caption": "the reviewer's words for these seconds"})
    pull_and_merge(ws, lsc, st)
    seen = (task["data"]["start_s"], task["data"]["end_s"])

    def reviewed_spans() -> set:
        span = {c.clip_id: (c.start_s, c.end_s) for c in ws.read_records("clips")}
        return {span[c.item_id] for c in ws.read_records("captions") if c.annotation_id == annotation["id"]}

    def unmatched() -> int:
        return json.loads((ws.manifests / "summary.json").read_text())["reviews_unmatched"]

    assert reviewed_spans() == {seen} and unmatched() == 0
    build = dict(videos_dir=str(demo_dir / "videos"), annotations=str(demo_dir / "annotations.json"),
                 workspace=str(ws.root), review={"enabled": "off"})
    build_hivau(**build, plan={"clips": {"mode": "even", "k": 3}})  # the demo's own clips are 2 per event
    assert seen not in {(c.start_s, c.end_s) for c in ws.read_records("clips")}
    assert reviewed_spans() == set()  # the caption did not move to other times, though the id exists again
    assert item_id in {c.clip_id for c in ws.read_records("clips")}
    assert unmatched() == 1 and [r.annotation_id for r in ws.read_records("reviews_unmatched")] == [annotation["id"]]
    build_hivau(**build)  # the original plan: the review is back on its clip
    assert reviewed_spans() == {seen} and unmatched() == 0


def test_the_queue_puts_an_audit_sample_first_and_the_card_reports_it(label_studio, fresh_workspace):
    ws, lsc = Workspace.at(fresh_workspace), client(label_studio)
    st = settings(label_studio, audit_size=3)
    report = push(ws, lsc, st)
    # the demo's clip captions are the annotation file's own words: no machine draft to audit at that level
    assert report.audit == {"clip": 0, "event": 3, "video": 3}
    events = sorted(tasks_by_key(lsc, ws, st, "event").values(), key=lambda t: t["data"]["queue"])
    assert [t["data"]["audit"] for t in events[:4]] == [True, True, True, False]
    assert sorted(t["data"]["queue"] for t in events) == list(range(1, len(events) + 1))
    rest = [t["data"]["risk"] for t in events[3:]]
    assert rest == sorted(rest, reverse=True)  # riskiest first after the sample
    pid = report.projects["event"]
    (view,) = [v for v in lsc.views(pid) if v["data"]["title"] == "hivau review queue"]
    assert (view["data"].get("ordering") or view.get("ordering")) == ["tasks:data.queue"]

    for task, verdict in zip(events[:3], ("accept", "accept", "reject")):
        annotate(lsc, task, verdict)
    annotate(lsc, events[3], "reject")  # outside the sample: not an audit figure
    pull_and_merge(ws, lsc, st)
    release = build_release(ws, ReleaseSettings(include_unreviewed=True))
    manifest = verify_release(release)
    rows = [r for r in manifest["audit"] if r["level"] == "event" and r["audited"]]  # one per draft generator
    assert [sum(r[k] for r in rows) for k in ("audited", "accepted", "rejected")] == [3, 2, 1]
    drafted = sum(1 for s in ws.read_records("summaries") if s.level == "event" and s.provenance == "auto_draft")
    assert sum(r["unreviewed_drafts"] for r in rows) == drafted
    for r in rows:
        low, high = wilson_interval(r["accepted"], r["audited"])
        assert r["acceptance_ci95"] == [round(low, 4), round(high, 4)]
        assert r["est_rejected_unreviewed"] == round(r["rejected"] / r["audited"] * r["unreviewed_drafts"], 1)
    card = (release / "README.md").read_text()
    assert "## Audited quality" in card and "| event | extractive | 3 | 2 | 0 | 1 |" in card


def test_flags_reach_the_annotator_and_the_card_measures_the_checks(label_studio, fresh_workspace):
    """A draft that fails a check shows the flag and its evidence in its Label Studio task; the queue tab shows
    columns to sort and filter by; the card reports the check's precision and recall on the audited verdicts, and
    unreviewed flagged drafts stay out of the release."""
    from hivau.tasks.text.verify import verify_item

    ws, lsc = Workspace.at(fresh_workspace), client(label_studio)
    items = {it.video_id: it for it in ws.iter_videos() if it.status == "done" and it.planned_events}
    bad_video, good_video = sorted(items)[:2]
    item = items[bad_video]
    summary = next(s for s in item.summaries if s.level == "event")
    summary.description = f"{summary.description} A second man arrives at 500 s."
    ws.put_video(verify_item(item))
    st = settings(label_studio, audit_size=1000)  # every task in the audit sample: every verdict counts
    report = push(ws, lsc, st)
    events = tasks_by_item(lsc, ws, st, "event")
    flagged = events[summary.item_id]
    assert flagged["data"]["errors"] >= 1 and "time_outside_span" in flagged["data"]["checks"]
    assert "ERROR time_outside_span (description): 500 s (span" in flagged["data"]["flags"]
    clean = next(t for i, t in events.items() if i.startswith(good_video) and not t["data"]["errors"])
    assert clean["data"]["level"] == "event"
    (view,) = [v for v in lsc.views(report.projects["event"]) if v["data"]["title"] == "hivau review queue"]
    hidden = view["data"]["hiddenColumns"]["explore"]
    assert "tasks:data.video" in hidden and "tasks:id" in hidden
    assert not {"tasks:data.item_id", "tasks:data.errors", "tasks:data.checks", "tasks:data.risk"} & set(hidden)

    annotate(lsc, flagged, "reject")
    annotate(lsc, clean, "accept")
    pull_and_merge(ws, lsc, st)
    manifest = verify_release(build_release(ws, ReleaseSettings(include_unreviewed=True)))
    gate = {r["check"]: r for r in manifest["checks"]}["time_outside_span"]
    assert gate["audited_flagged"] == 1 and gate["precision"]["value"] == 1.0 and gate["recall"]["value"] == 1.0
    low, high = wilson_interval(1, 1)
    assert gate["precision"]["ci95"] == [round(low, 4), round(high, 4)]
    # the flagged draft was reviewed (rejected): nothing of it is released; no flagged draft is held back either
    assert not manifest["held_back_by_check"].get("time_outside_span")
    assert "## Draft checks" in (Path(manifest["files"] and ws.releases / manifest["name"]) / "README.md").read_text()


def test_a_repush_shows_changed_flags_on_known_tasks_and_keeps_their_place(label_studio, fresh_workspace):
    from hivau.tasks.text.verify import verify_item

    ws, lsc = Workspace.at(fresh_workspace), client(label_studio)
    st = settings(label_studio, audit_size=2)
    push(ws, lsc, st)
    before = tasks_by_item(lsc, ws, st, "event")
    item = next(it for it in ws.iter_videos() if it.status == "done" and it.planned_events and it.summaries)
    summary = next(s for s in item.summaries if s.level == "event")
    task = before[summary.item_id]
    annotate(lsc, task, "accept")
    summary.description = f"{summary.description} It ends at 500 s."
    ws.put_video(verify_item(item))
    report = push(ws, lsc, st)
    assert report.flags_updated["event"] == 1 and report.new_predictions["event"] == 1
    after = tasks_by_item(lsc, ws, st, "event")[summary.item_id]
    assert after["id"] == task["id"] and "time_outside_span" in after["data"]["flags"]
    assert {k: after["data"][k] for k in ("queue", "audit", "risk")} == {k: task["data"][k] for k in ("queue", "audit", "risk")}
    assert len(after["annotations"]) == 1  # the reviewer's work is untouched
    assert push(ws, lsc, st).flags_updated["event"] == 0
