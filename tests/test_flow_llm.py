"""build-hivau on the demo set pointed at the OpenAI-compatible test server, on a real Prefect server:
drafts through the `openai` client, keys from a Prefect Secret block kept out of logs and outputs, usage
artifact, re-runs and killed runs that send no request twice."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from openai_server import FakeOpenAI

pytestmark = pytest.mark.prefect_server
SECRET = "sk-hivau-test-5ecret-d0-not-leak"


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file() and p.suffix != ".mp4")


def _no_llm_env(monkeypatch):
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "HIVAU_LLM_MODEL"):
        monkeypatch.delenv(var, raising=False)


def test_llm_drafts_through_the_flow_with_a_secret_block(prefect_api, demo_dir, tmp_path, caplog, capfd, monkeypatch):
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, LogFilter, LogFilterFlowRunId

    from hivau.flows.build import build_hivau
    from hivau.tasks.text.llm import LLMSettings
    from hivau.tasks.text.rollup import RollupSettings

    _no_llm_env(monkeypatch)
    Secret(value=SECRET).save("hivau-test-llm-key", overwrite=True)
    caplog.set_level(logging.DEBUG)  # openai and httpx debug logs included
    ws = tmp_path / "ws"
    with FakeOpenAI() as srv:
        rollup = RollupSettings(llm=LLMSettings(base_url=srv.base_url, model="demo-llm",
                                                api_key_block="hivau-test-llm-key"))
        run = lambda: build_hivau(videos_dir=str(demo_dir / "videos"), annotations=str(demo_dir / "annotations.json"),
                                  workspace=str(ws), cut_mode="copy", rollup=rollup, return_state=True)
        state = run()
        first = len(srv.completions)
        assert {s.headers.get("authorization") for s in srv.completions} == {f"Bearer {SECRET}"}
        state_again = run()
        assert len(srv.completions) == first  # the re-run is answered from the cache
    summary = state.result()
    assert first > 0 and summary["summaries"] == 13 and summary["qa_pairs"] == 13 * 7
    summaries = pq.read_table(ws / "manifests/summaries.parquet").to_pylist()
    assert {(s["generator"]["backend"], s["generator"]["model"]) for s in summaries} == {("openai", "demo-llm")}
    assert all(s["provenance"] == "auto_draft" and s["judgement"] and s["description"] for s in summaries)
    qa = pq.read_table(ws / "manifests/qa.parquet").to_pylist()
    assert {q["generator"]["prompt_version"] for q in qa} == {"qa_5w2h@1"}
    assert pq.read_table(ws / "manifests/motion_phrases.parquet").num_rows > 0

    with get_client(sync_client=True) as client:
        [usage] = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["build-hivau-llm-usage"])),
                                        limit=1, sort="CREATED_DESC")
        logs = [log.message for s in (state, state_again)
                for log in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[s.state_details.flow_run_id])))]
        artifacts = client.read_artifacts()
    table = json.loads(usage.data) if isinstance(usage.data, str) else usage.data
    metrics = {row["metric"]: row["value"] for row in table}
    assert metrics["requests"] == 0 and metrics["cache_hits"] == first and metrics["model"] == "demo-llm"
    assert any("roll-up backend: openai-compatible LLM demo-llm" in m for m in logs)
    # the key is nowhere: not in Prefect logs or artifacts, local logs, stdout/stderr, or the workspace
    out, err = capfd.readouterr()
    assert SECRET not in "\n".join(logs) + out + err + caplog.text
    assert SECRET not in json.dumps([a.model_dump(mode="json") for a in artifacts])
    assert SECRET.encode() not in _all_bytes(ws)


def test_killed_run_resumes_without_repeating_answered_requests(prefect_server, demo_dir, tmp_path):
    ws = tmp_path / "ws"
    latency = 0.4
    with FakeOpenAI(latency_s=latency) as srv:
        env = {**prefect_server["env"], "OPENAI_BASE_URL": srv.base_url, "OPENAI_API_KEY": SECRET,
               "HIVAU_LLM_MODEL": "demo-llm"}
        cmd = [sys.executable, "-m", "hivau.cli", "build", "--videos", str(demo_dir / "videos"), "--annotations",
               str(demo_dir / "annotations.json"), "--workspace", str(ws), "--cut-mode", "copy",
               "--llm-concurrency", "2"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.time() + 300
        while len(srv.completions) < 8:
            assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        proc.wait()
        first = list(srv.completions)
        # answered = the reply left the server before the kill (requests still in flight may be asked again)
        answered = {json.dumps(s.body["messages"]) for s in first if s.t + latency < killed_at - 0.05}
        assert answered
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        second = srv.completions[len(first):]
        assert not answered & {json.dumps(s.body["messages"]) for s in second}
        assert SECRET not in out.stdout + out.stderr
        third = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert third.returncode == 0 and len(srv.completions) == len(first) + len(second)
    summary = json.loads((ws / "manifests/summary.json").read_text())
    assert summary["summaries"] == 13 and summary["qa_pairs"] == 91
    assert summary["texts_by_generator"]["summary:openai"] == 13


def test_defective_drafts_are_flagged_kept_out_of_releases_and_repaired(prefect_api, demo_dir, tmp_path, monkeypatch):
    """The issue's scenario: a server that writes one defective video summary per anomalous video (a judgement
    against the label, things no caption saw, a time past the end, a looping text). Without repair, each is
    flagged in the checks table and its rows stay out of an `--include-unreviewed` release; with one repair
    attempt, each is asked again with its evidence and comes back clean."""
    from openai_server import Reply, grounded_answer

    from hivau.flows.build import build_hivau
    from hivau.tasks.release.publish import ReleaseSettings, build_release, verify_release
    from hivau.tasks.text.llm import LLMSettings
    from hivau.tasks.text.rollup import RollupSettings
    from hivau.workspace import Workspace

    defects = {"Falling": ("judgement", "No anomaly occurs in this video; everything appears normal."),
               "Fighting": ("description", "A woman with a knife climbs a ladder beside a parked truck."),
               "Running": ("description", "It ends at 900 s."),
               "RoadAccidents": ("description", "The car hits the car again. " * 5)}
    expected = {"Falling": "label_contradiction", "Fighting": "unsupported_content", "Running": "time_outside_span",
                "RoadAccidents": "repeated_phrase"}

    def responder(body):
        answer = grounded_answer(body)
        text = json.dumps(body["messages"])
        video_level = "labelled as anomalous: " in text and body["response_format"]["json_schema"]["name"] == "SummaryOut"
        if video_level and "failed these checks" not in text:
            label = text.split("labelled as anomalous: ")[1].split("\\n")[0].rstrip(".")
            if label in defects:
                field, bad = defects[label]
                answer[field] = bad if field == "judgement" else f"{answer[field]} {bad}"
                answer["summary"] = f"{answer['judgement']} {answer['description']}"
        return Reply(json.dumps(answer))

    _no_llm_env(monkeypatch)
    ws = tmp_path / "ws"
    with FakeOpenAI(responder) as srv:
        def build(attempts: int) -> dict:
            rollup = RollupSettings(repair_attempts=attempts,
                                    llm=LLMSettings(base_url=srv.base_url, model="demo-llm", **{"backoff_s": 0.05}))
            return build_hivau(videos_dir=str(demo_dir / "videos"), annotations=str(demo_dir / "annotations.json"),
                               workspace=str(ws), cut_mode="copy", rollup=rollup)

        first = build(0)
        checks = pq.read_table(ws / "manifests/checks.parquet").to_pylist()
        videos = {v["video_id"]: v["labels"][0] for v in pq.read_table(ws / "manifests/videos.parquet").to_pylist()
                  if v["labels"] and v["labels"][0] in defects}
        found = {(c["item_id"], c["check"]) for c in checks if c["level"] == "video" and c["severity"] == "error"}
        for video_id, label in videos.items():
            assert (video_id, expected[label]) in found, (label, found)
        assert set(videos.values()) == set(defects)
        assert first["flagged_error"] >= 4 and any(k.startswith("video:") for k in first["checks_by_level"])
        manifest = verify_release(build_release(Workspace.at(ws), ReleaseSettings(include_unreviewed=True)))
        held = manifest["held_back_by_check"]
        assert {expected[label] for label in videos.values()} <= set(held)
        rows = pq.read_table(Path(ws / "releases" / manifest["name"] / "data/train.parquet")).to_pylist() + \
            pq.read_table(Path(ws / "releases" / manifest["name"] / "data/test.parquet")).to_pylist()
        released = {(r["item_id"], r["task"]) for r in rows}
        fall = next(v for v, label in videos.items() if label == "Falling")
        assert (fall, "judgement") not in released
        assert any(item_id.startswith(fall) for item_id, _ in released)  # its other texts are released

        sent = len(srv.completions)
        second = build(1)  # the same drafts come from the cache; each failed one is asked again once
        repairs = [s for s in srv.completions[sent:] if "failed these checks" in json.dumps(s.body["messages"])]
    assert len(repairs) == len(videos)
    assert any("900 s" in json.dumps(r.body["messages"]) for r in repairs)
    assert second["drafts_repaired"] == len(videos) and second["drafts_still_failing"] == 0
    checks = pq.read_table(ws / "manifests/checks.parquet").to_pylist()
    assert not {(c["item_id"], c["check"]) for c in checks if c["severity"] == "error"} & found
