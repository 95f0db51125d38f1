"""Faults survived: Ctrl-C and SIGTERM stop a build (with and without a Prefect server) and the trainer within
seconds, say what they were doing and how to resume, release the workspace lock, leave their Prefect runs marked,
and the next run finishes the work as if nothing had happened."""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers import manifest_digest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_faults as bf  # noqa: E402 (its signal_and_time: the seconds themselves are measured there)

BIN = Path(sys.executable).parent


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    """A command in its own session and process group, as a terminal runs it."""
    out = open(log, "w")
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_until(condition, proc: subprocess.Popen, log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, f"finished before the fault could be injected:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)


def _stop(proc: subprocess.Popen, how: str, log: Path) -> float:
    """Ctrl-C or SIGTERM, as the benchmark sends them; seconds until it exits (a hang fails the test)."""
    seconds = bf.signal_and_time(proc, how)
    if seconds is None:
        pytest.fail(f"still running {bf.STOP_CAP_S} s after {how}:\n{log.read_text()[-3000:]}")
    return seconds


def _flow_run_states(db: Path, workspace: Path) -> dict[str, str]:
    """flow name -> state type of the runs on `workspace`, read from a Prefect server's database."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT f.name, r.state_type, r.parameters FROM flow_run r JOIN flow f ON f.id = r.flow_id")
        return {name: state for name, state, params in rows if str(workspace) in params}


def _media_files(ws: Path) -> list[Path]:
    return [p for p in (ws / "media").rglob("*.mp4")] if (ws / "media").is_dir() else []


def _assert_stopped_cleanly(ws: Path, log: Path, how: str, rc: int) -> None:
    from hivau.workspace import Workspace

    text = log.read_text()
    signame = "SIGINT" if how == "ctrl-c" else "SIGTERM"
    assert rc == (130 if how == "ctrl-c" else 143), text[-3000:]
    assert re.search(rf"hivau: build stopped by {signame} during (cut|start-up|ingest)", text), text[-3000:]
    assert "Resume with: hivau build --videos" in text
    assert not list(ws.rglob(".*.part.mp4")), "a killed ffmpeg's partial output was left"
    with Workspace.at(ws).lock("the test", wait_s=0):  # the lock was released
        pass
    quarantined = [q for line in (ws / "state" / "videos").glob("*.json")
                   for q in json.loads(line.read_text()).get("quarantine", []) if q["reason"] != "no_input_text"]
    assert not [q for q in quarantined if q["stage"] == "cut"], f"a stop was recorded as a broken video: {quarantined}"


@pytest.mark.prefect_server
def test_ctrl_c_and_sigterm_stop_a_build_that_then_resumes_to_the_same_manifests(demo_dir, prefect_server,
                                                                                 built_demo, tmp_path):
    ws = tmp_path / "ws"
    cmd = [str(BIN / "hivau"), "build", "--videos", str(demo_dir / "videos"), "--annotations",
           str(demo_dir / "annotations.json"), "--workspace", str(ws), "--workers", "1", "--shard-size", "1"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}

    # 1. no Prefect server configured (the README's first command): Ctrl-C in the terminal, once cutting started
    home = tmp_path / "prefect-home"
    log = tmp_path / "build-1.log"
    proc = _start(cmd, {**clean, "PREFECT_HOME": str(home)}, log)
    _wait_until(lambda: len(_media_files(ws)) >= 2, proc, log)
    _stop(proc, "ctrl-c", log)
    _assert_stopped_cleanly(ws, log, "ctrl-c", proc.returncode)
    states = _flow_run_states(home / "prefect.db", ws)
    # the temporary server outlived the build long enough to record how its runs ended, then went away
    assert states == {"build-hivau": "CRASHED", "process-videos": "CRASHED"}, states
    url = re.search(r"temporary Prefect server on (\S+)", log.read_text()).group(1)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)
    cut_first = len(_media_files(ws))

    # 2. against a Prefect server: SIGTERM (a scheduler or container runtime), later in the cut
    log = tmp_path / "build-2.log"
    proc = _start(cmd, prefect_server["env"], log)
    _wait_until(lambda: len(_media_files(ws)) >= cut_first + 2, proc, log)
    _stop(proc, "sigterm", log)
    _assert_stopped_cleanly(ws, log, "sigterm", proc.returncode)
    assert _flow_run_states(prefect_server["home"] / "prefect.db", ws) == {"build-hivau": "CRASHED",
                                                                          "process-videos": "CRASHED"}

    # 3. the same command again finishes the build: nothing cut twice, nothing lost, the same records
    log = tmp_path / "build-3.log"
    done = subprocess.run(cmd, env=prefect_server["env"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((ws / "manifests" / "summary.json").read_text())
    work = summary["batches"][next(iter(summary["batches"]))]
    assert work["videos_processed"] > 0
    assert manifest_digest(ws) == manifest_digest(built_demo)
    segments = {p.stem: json.loads(p.read_text()) for p in (ws / "state" / "segments").glob("*.json")}
    assert segments and all(Path(s["result"]["path"]).stat().st_size == s["size"] for s in segments.values())


def _train_cmd(release: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hivau.models.train", "--release", str(release), "--preset", "tiny", "--out",
            str(out), "--batch-size", "2", "--scorer-epochs", "2", "--log-every", "1", "--num-threads", "1",
            "--workers", "1", "--save-every", "1000", "--preset-options", '{"image_size": 64}', *extra]


def test_ctrl_c_stops_the_trainer_at_a_step_with_a_checkpoint_it_resumes_from_exactly(demo_release, tmp_path):
    from safetensors.torch import load_file

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "train.log"
    proc = _start(_train_cmd(demo_release, tmp_path / "stopped", "--max-steps", "400"), env, log)
    _wait_until(lambda: '"step": 3,' in log.read_text(), proc, log, timeout_s=600)
    _stop(proc, "ctrl-c", log)
    text = log.read_text()
    assert proc.returncode == 130, text[-3000:]
    stopped = json.loads([ln for ln in text.splitlines() if '"stopped": "signal"' in ln][-1])
    step = stopped["step"]
    pointer = (tmp_path / "stopped" / "checkpoints" / "latest").read_text().strip()
    assert pointer == f"step-{step:07d}.pt"
    assert f"hivau-train stopped by SIGINT during step {step} of 400" in text
    assert "Resume with:" in text and "The next run resumes from that checkpoint" in text

    # resumed to step+2, it equals a run that went to step+2 without stopping
    resumed = subprocess.run(_train_cmd(demo_release, tmp_path / "stopped", "--max-steps", "400", "--stop-at",
                                        str(step + 2)), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'"resumed_from": "{pointer}"' in resumed.stdout
    straight = subprocess.run(_train_cmd(demo_release, tmp_path / "straight", "--max-steps", "400", "--stop-at",
                                         str(step + 2)), env=env, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    a = load_file(str(tmp_path / "stopped" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    # the resumed run trained the two steps left (finite losses), the straight one every step once
    logs = {run: [json.loads(line) for line in (tmp_path / run / "train_log.jsonl").read_text().splitlines()]
            for run in ("stopped", "straight")}
    steps = {run: [r["step"] for r in log if r.get("stage") == "vlm"] for run, log in logs.items()}
    assert steps["straight"] == list(range(1, step + 3)) and steps["stopped"][-2:] == [step + 1, step + 2]
    assert all(math.isfinite(r["total"]) for log in logs.values() for r in log if r.get("stage") == "vlm")


@pytest.mark.prefect_server
def test_a_dask_worker_killed_mid_shard_has_its_shard_run_again_and_nothing_lost_or_doubled(
        prefect_server, demo_dir, built_demo, tmp_path):
    import psutil

    ws, log = tmp_path / "ws", tmp_path / "build.log"
    proc = _start([str(BIN / "hivau"), "build", "--videos", str(demo_dir / "videos"), "--annotations",
                   str(demo_dir / "annotations.json"), "--workspace", str(ws), "--task-runner", "dask",
                   "--workers", "2", "--shard-size", "2"], prefect_server["env"], log)

    def worker_cutting() -> psutil.Process | None:
        """A Dask worker process of this build with an ffmpeg running under it: it is in the middle of a shard."""
        try:
            for child in psutil.Process(proc.pid).children(recursive=True):
                if child.name() == "ffmpeg":
                    return child.parent()
        except psutil.NoSuchProcess:
            pass
        return None

    _wait_until(lambda: worker_cutting() is not None, proc, log)
    victim = worker_cutting()
    victim.kill()  # SIGKILL: no handler runs, as when the OOM killer or a lost node takes a worker
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert not victim.is_running()
    assert manifest_digest(ws) == manifest_digest(built_demo)
    segments = [json.loads(p.read_text()) for p in (ws / "state" / "segments").glob("*.json")]
    assert segments and all(Path(s["result"]["path"]).stat().st_size == s["size"] for s in segments)
    assert not list(ws.rglob(".*.part.mp4"))


def _lock_holder(ws: Path) -> str:
    path = ws / "state" / "workspace.lock"
    return path.read_text() if path.is_file() else ""


@pytest.mark.prefect_server
def test_ctrl_c_and_sigterm_stop_push_pull_and_release_which_then_complete_without_duplicates(
        label_studio, fresh_workspace, tmp_path):
    from test_review import annotate, client, settings

    from hivau.tasks.release.publish import verify_release
    from hivau.tasks.review.push import push
    from hivau.workspace import Workspace

    ws, lsc = Workspace.at(fresh_workspace), client(label_studio)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LABEL_STUDIO_"))},
           "LABEL_STUDIO_URL": label_studio["url"], "LABEL_STUDIO_API_KEY": label_studio["token"],
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(label_studio["document_root"])}

    def stop_once_it_holds_the_workspace(args: list[str], how: str, holder: str) -> None:
        """The command stopped just after it took the workspace (its work has begun), as a user or scheduler would."""
        log = tmp_path / f"{'-'.join(args[:2])}.log"
        proc = _start([str(BIN / "hivau"), *args, "--workspace", str(fresh_workspace)], env, log)
        operation = " ".join(args[:2]) if args[0] == "review" else args[0]
        _wait_until(lambda: holder in _lock_holder(fresh_workspace), proc, log)
        _stop(proc, how, log)
        text = log.read_text()
        assert proc.returncode == (130 if how == "ctrl-c" else 143), text[-3000:]
        assert f"hivau: {operation} stopped by" in text and f"Resume with: hivau {operation}" in text
        with ws.lock("the test", wait_s=0):
            pass

    def run(*args: str) -> None:
        done = subprocess.run([str(BIN / "hivau"), *args, "--workspace", str(fresh_workspace)], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # push, stopped part-way (one task per request), then again: each item has one task with one prediction,
    # the same tasks an uninterrupted push makes
    stop_once_it_holds_the_workspace(["review", "push", "--batch-size", "1"], "ctrl-c", "review push")
    run("review", "push")
    push(ws, lsc, settings(label_studio, dataset="uninterrupted"))
    for level in ("clip", "event", "video"):
        projects = {p["title"]: p["id"] for p in lsc.projects()}
        tasks = list(lsc.iter_tasks(projects[settings(label_studio).project_title(ws, level)]))
        reference = list(lsc.iter_tasks(projects[settings(label_studio, dataset="uninterrupted").project_title(ws, level)]))
        keys = [t["data"]["key"] for t in tasks]
        assert len(keys) == len(set(keys)) and set(keys) == {t["data"]["key"] for t in reference}, level
        assert all(len(t["predictions"]) == 1 for t in tasks), level

    # pull, stopped, then again: every annotation once
    projects = {p["title"]: p["id"] for p in lsc.projects()}
    clip_tasks = list(lsc.iter_tasks(projects[settings(label_studio).project_title(ws, "clip")]))
    made = [annotate(lsc, t, "accept")["id"] for t in clip_tasks[:3]]
    stop_once_it_holds_the_workspace(["review", "pull"], "sigterm", "review pull")
    run("review", "pull")
    assert sorted(r.annotation_id for r in ws.read_records("reviews")) == sorted(made)

    # release, stopped: no release and no half-written folder; then again: a whole one
    stop_once_it_holds_the_workspace(["release", "--include-unreviewed", "--no-publish"], "ctrl-c", "publish-release")
    assert not list((fresh_workspace / "releases").glob("*")) if (fresh_workspace / "releases").is_dir() else True
    run("release", "--include-unreviewed", "--no-publish")
    (release,) = (fresh_workspace / "releases").glob("v*")
    verify_release(release)


@pytest.mark.prefect_server
def test_ctrl_c_stops_propose_which_then_completes(prefect_server, demo_dir, tmp_path):
    import shutil

    import torch

    from hivau.flows.build import build_hivau
    from hivau.models.composed_vlm import HivauVLM
    from hivau.models.io import save_model
    from hivau.models.presets import tiny, train_tokenizer
    from hivau.workspace import Workspace

    videos, ws = tmp_path / "videos", tmp_path / "ws"
    videos.mkdir()
    for path in sorted((demo_dir / "videos").glob("demo_*.mp4"))[:4]:
        shutil.copy(path, videos / path.name)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server["url"]}):
        build_hivau(videos_dir=str(videos), workspace=str(ws), format="none", review={"enabled": "off"})
    torch.manual_seed(0)
    model = HivauVLM(tiny(300, image_size=64, d_vision=64, d_lm=64), train_tokenizer(["a person walks."] * 5, 300))
    save_model(model, tmp_path / "scorer", card="# test\n")
    cmd = [str(BIN / "hivau"), "propose", "--workspace", str(ws), "--model", str(tmp_path / "scorer"), "--no-push"]
    log = tmp_path / "propose.log"
    proc = _start(cmd, prefect_server["env"], log)
    _wait_until(lambda: "propose-events" in _lock_holder(ws), proc, log)
    _stop(proc, "ctrl-c", log)
    assert proc.returncode == 130, log.read_text()[-3000:]
    assert "hivau: propose stopped by SIGINT" in log.read_text() and "Resume with: hivau propose" in log.read_text()
    assert _flow_run_states(prefect_server["home"] / "prefect.db", ws).get("propose-events") == "CRASHED"
    with Workspace.at(ws).lock("the test", wait_s=0):
        pass
    done = subprocess.run(cmd, env=prefect_server["env"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "demo_" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
