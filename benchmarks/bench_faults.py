"""Faults: power cuts (kill -9 of a whole process tree) at random moments of builds, review pulls and releases; and
how long Ctrl-C and SIGTERM take to stop a 1,000-video build and the other long commands.

    .venv/bin/python benchmarks/bench_faults.py kills --kills 50,25,25 --out benchmarks/results/faults_kills.json
    .venv/bin/python benchmarks/bench_faults.py stops --videos 1000 --repeats 2 --baseline 891235c
    .venv/bin/python benchmarks/bench_faults.py commands --repeats 3

`commands`: on the demo (8 videos) with a Prefect server and a Label Studio started for the run, each of `hivau
review push --batch-size 1` (of a built workspace, to a new dataset each time), `hivau review pull` (of a pushed and
partly annotated one), `hivau release --include-unreviewed --no-publish`, `hivau propose --no-push` (a tiny scorer
made here, on a workspace built with `--format none`) and `hivau-train --preset tiny` is started `--repeats` times
per signal and sent Ctrl-C or SIGTERM once it holds the workspace lock (the trainer: once its log shows step 3).
Measured: seconds from the signal to the exit, the exit code, whether the lock is free and the resume command printed.

`stops`: a batch of N hard links of one 30 s video (bench_scale's `make_batch`), built by `python -m hivau.cli build
--cut-mode copy --workers 2 --rollup extractive` from two versions laid out side by side (the `--baseline` git rev and
this working tree, each alone on PYTHONPATH), with no Prefect server (the temporary one) and with one; each is sent
Ctrl-C (SIGINT to its process group, as a terminal does) or SIGTERM (to the process, as a scheduler does) 1 s after it
took the workspace, and again once 300 segments were cut. Measured: seconds from the signal to the exit (a build still
running after 60 s is killed and reported as such), whether the workspace lock is free after, and how many temporary
Prefect servers were left running.

`kills`: the demo (`hivau demo-data --no-faults`, `--sets` sets of 8 videos) is built by `hivau build --rollup
extractive --workers 2` against one Prefect server started for the whole campaign; a copy of that workspace is pushed
to a Label Studio started for the campaign (its own venv, `.venv-ls`) and given some annotations through the API
(accepted, edited and rejected captions, an edited event, an event whose start was moved 1 s, an accepted video).
Three operations are then cut off, each run as the command line a person types, in its own process group:

- build: `hivau build ...` into an empty workspace, and (every other trial) over a finished one;
- pull: `hivau review pull` into a copy of the pushed workspace;
- release: `hivau release --include-unreviewed --no-publish` of a copy of the pulled workspace, with no release yet
  and (every other trial) with one release already there.

The reference for each (operation, start) is an uninterrupted run, made twice (two copies) to show it repeats; its
wall time is the kill window (`--window lock`: the time it held the workspace lock, counted from the moment the
killed run takes it, so that every kill lands inside the operation rather than in the interpreter's start-up). A
trial copies the start, then cuts the power (SIGSTOP, then SIGKILL, to the command's process group and every
descendant, ffmpeg included) at a moment drawn uniformly from that window, 1, 2, 1 or 3 times in turn, each on a new
run of the same command; right after every kill it checks the workspace (`check_workspace`: every record file under
state/ parses and validates, the current manifest set is complete and reads, its events and clips name media with
the frame counts they say, every mp4 in media/ decodes, every release folder verifies, the lock is free). Then the
command runs to completion and the result is compared with the reference: the manifests' `manifest_digest`
(tests/helpers.py: every table's rows, run times left out) for build and pull; for a release, the latest release's
content (`content_sha256`, and its manifest without name, time, previous and the card). A kill drawn after the run
had finished is a miss, not a kill; trials go on until each operation has its number of kills. Each kill is placed
before the command took the workspace lock (the interpreter's start-up), inside it (state/workspace.lock names
its pid: inside the operation), or after it let the lock go (exiting).

Results: `--out` (default benchmarks/results/faults_kills.json), and a summary on stdout. A failed trial keeps its
workspace and logs under the work folder (`--work`, default a temporary folder) and names them.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers import annotate, manifest_digest  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS_KILLS = REPO / "benchmarks" / "results" / "faults_kills.json"
RESULTS_STOPS = REPO / "benchmarks" / "results" / "faults_stops.json"
RESULTS_COMMANDS = REPO / "benchmarks" / "results" / "faults_commands.json"
KILLS_PER_TRIAL = (1, 2, 1, 3)  # cycled: most trials resume after one kill, some after two or three
# where a kill landed: in the interpreter's start-up, inside the operation, or after it let the workspace go (exiting)
PHASES = ("before the lock", "inside the lock", "after the lock")
RUN_TIMEOUT_S = 900  # a resumed run that takes this long is a hang
# what differs between two releases of the same content: their name, time, predecessor, and the card that says so
RELEASE_RUN_FIELDS = frozenset({"name", "created_at", "previous", "same_content_as_previous"})


# ---------------------------------------------------------------- processes and the power cut


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    """A command in its own session and process group, as a terminal (or a service manager) runs it."""
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (no dependency beyond Linux)."""
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:  # gone since the listing
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def process_tree(pid: int) -> set[int]:
    kids, tree, todo = _children(), set(), [pid]
    while todo:
        p = todo.pop()
        if p not in tree:
            tree.add(p)
            todo += kids.get(p, [])
    return tree


def _signal(pids, sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def power_cut(proc: subprocess.Popen) -> None:
    """SIGKILL the process, its group and every descendant (ffmpeg included) as one power cut: everything is stopped
    first, so that nothing forks or writes between the first kill and the last."""
    try:
        os.killpg(proc.pid, signal.SIGSTOP)
    except ProcessLookupError:
        pass
    stopped: set[int] = set()
    while fresh := process_tree(proc.pid) - stopped:  # a child outside the group (its own session) too
        _signal(fresh, signal.SIGSTOP)
        stopped |= fresh
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _signal(stopped, signal.SIGKILL)
    proc.wait()


def kill_at(proc: subprocess.Popen, delay_s: float, ws: Path) -> tuple[bool, bool]:
    """Power-cut `proc` `delay_s` seconds from now: (whether the kill landed, False when it finished first; whether
    it had held the workspace lock by then)."""
    until, held = time.monotonic() + delay_s, False
    while proc.poll() is None and time.monotonic() < until:
        held = held or f"(pid {proc.pid} " in lock_holder(ws)
        time.sleep(0.01)
    if proc.poll() is None:
        power_cut(proc)
    return proc.returncode == -signal.SIGKILL, held


def kill_when(proc: subprocess.Popen, condition: Callable[[], bool], poll_s: float = 0.002) -> bool:
    """Power-cut `proc` the moment `condition()` holds (a targeted kill); False when it finished first."""
    while proc.poll() is None:
        if condition():
            power_cut(proc)
            return True
        time.sleep(poll_s)
    return False


def replaced(paths: Iterable[Path]) -> Callable[[], bool]:
    """A condition: one of `paths` has been renamed over (a new file, a new inode) since now."""
    inodes = {p: p.stat().st_ino for p in paths}

    def check() -> bool:
        return any(p.exists() and p.stat().st_ino != ino for p, ino in inodes.items())

    return check


def recut(folder: Path) -> Callable[[], bool]:
    """A condition: a media file of `folder` was written over, or a new one appeared beside them (a re-cut)."""
    before = set(folder.glob("*.mp4"))
    written_over = replaced(before)
    return lambda: written_over() or bool(set(folder.glob("*.mp4")) - before)


def lock_holder(ws: Path) -> str:
    path = ws / "state" / "workspace.lock"
    try:
        return path.read_text()
    except OSError:
        return ""


def run_to_end(cmd: list[str], env: dict, log: Path, ws: Path, timeout_s: float = RUN_TIMEOUT_S) -> dict:
    """Run a command to completion; its exit code, wall seconds and when it took the workspace lock."""
    started = time.monotonic()
    proc = start(cmd, env, log)
    lock_at = None
    while proc.poll() is None:
        if lock_at is None and f"(pid {proc.pid} " in lock_holder(ws):
            lock_at = time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            power_cut(proc)
            break
        time.sleep(0.02)
    return {"rc": proc.returncode, "seconds": round(time.monotonic() - started, 2),
            "lock_at_s": None if lock_at is None else round(lock_at, 2)}


def tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:] if log.is_file() else ""


# ---------------------------------------------------------------- is the workspace readable?


def hidden(path: Path, root: Path) -> bool:
    """Temporary files and folders (`.name.xxx.tmp`, `.clip.part.mp4`, `.v0002.abcd1234`) are no record: readers
    skip them."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _records(folder: Path, pattern: str, model) -> list[str]:
    problems = []
    for path in sorted(folder.glob(pattern)) if folder.is_dir() else []:
        if hidden(path, folder):
            continue
        try:
            model.model_validate_json(path.read_bytes())
        except Exception as exc:  # every way a record can be unreadable is a finding
            problems.append(f"{path}: {type(exc).__name__}: {str(exc)[:300]}")
    return problems


def check_state(ws: Path) -> list[str]:
    """Every record under state/: video records and batches validate, annotations validate, every other JSON parses."""
    from hivau.schemas.item import BatchRecord, VideoItem
    from hivau.schemas.records import ReviewRecord

    state = ws / "state"
    problems = _records(state / "videos", "*.json", VideoItem) + _records(state / "batches", "*.json", BatchRecord)
    problems += _records(state / "annotations", "*/*.json", ReviewRecord)
    for path in sorted(state.rglob("*.json")) if state.is_dir() else []:
        if hidden(path, state):
            continue
        try:
            json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: {type(exc).__name__}: {str(exc)[:300]}")
    return problems


def frames_in(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)


def check_manifests(ws: Path, expected: set[str]) -> list[str]:
    """The current set (absent, or whole): every expected file there and readable, the tables validate as records,
    and every event and clip row names a media file with the frames it says."""
    from hivau.workspace import Workspace

    link = ws / "manifests"
    if not link.exists():
        return [f"{link}: a link to nothing ({os.readlink(link)})"] if link.is_symlink() else []
    folder = link.resolve()
    problems = [f"{folder / name}: missing from the current set" for name in sorted(expected)
                if not (folder / name).is_file()]
    try:
        tables = Workspace.at(ws).manifest_tables()
        json.loads((folder / "summary.json").read_bytes())
    except Exception as exc:  # any error a reader would meet
        return problems + [f"{folder}: {type(exc).__name__}: {str(exc)[:300]}"]
    for row in [*tables.events, *tables.clips]:
        if not row.media_path:
            continue
        media = ws / row.media_path
        try:
            n = frames_in(media)
        except Exception as exc:  # any error a reader would meet
            problems.append(f"{media} (named by {row.video_id}'s manifest row): {type(exc).__name__}: {exc}")
            continue
        if row.n_frames is not None and n != row.n_frames:
            problems.append(f"{media}: {n} frames, its manifest row ({row.provenance}, {row.start_s}-{row.end_s} s) "
                            f"says {row.n_frames}")
    return problems


def check_media(ws: Path) -> list[str]:
    """Every media file in place decodes (cuts are written beside and renamed in)."""
    problems = []
    media = ws / "media"
    for path in sorted(media.rglob("*.mp4")) if media.is_dir() else []:
        if hidden(path, media):
            continue
        try:
            if not frames_in(path):
                problems.append(f"{path}: no video frames")
        except Exception as exc:  # any error a reader would meet
            problems.append(f"{path}: {type(exc).__name__}: {str(exc)[:300]}")
    return problems


def check_releases(ws: Path) -> list[str]:
    """Every release folder in place verifies against its manifest (an unfinished one is hidden)."""
    from hivau.tasks.release.publish import verify_release

    problems = []
    for path in sorted((ws / "releases").glob("v[0-9][0-9][0-9][0-9]")):
        try:
            verify_release(path)
        except Exception as exc:  # any error a reader would meet
            problems.append(f"{path}: {type(exc).__name__}: {str(exc)[:300]}")
    return problems


def check_lock(ws: Path) -> list[str]:
    """The killed run's lock went with it: the next operation can take the workspace."""
    path = ws / "state" / "workspace.lock"
    if not path.is_file():
        return []
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return [f"{path}: still held after the kill ({fh.read().strip()})"]
        fcntl.flock(fh, fcntl.LOCK_UN)
    return []


def check_workspace(ws: Path, expected_manifests: set[str] = frozenset()) -> list[str]:
    """What a reader would trip on: [] when every record is whole or absent."""
    return (check_state(ws) + check_manifests(ws, expected_manifests) + check_media(ws) + check_releases(ws)
            + check_lock(ws))


def leftovers(ws: Path) -> list[str]:
    """Temporary files and folders a killed run left (readers skip them; they hold disk space until removed).
    Manifest generations are left out: the writer keeps the previous set on purpose and removes the others."""
    out = []
    for path in ws.rglob(".*"):
        rel = path.relative_to(ws)
        if rel.parts[0] == ".manifests" or any(p.startswith(".") for p in rel.parts[:-1]):
            continue  # what lies inside a hidden folder counts with it
        out.append(rel.as_posix())
    return sorted(out)


# ---------------------------------------------------------------- what a finished run wrote


def latest_release(ws: Path) -> Optional[Path]:
    done = sorted(p for p in (ws / "releases").glob("v[0-9][0-9][0-9][0-9]") if (p / "manifest.json").is_file())
    return done[-1] if done else None


def release_digest(ws: Path) -> dict:
    """The latest release's content: its content hash and its manifest without what names or dates the run."""
    path = latest_release(ws)
    if path is None:
        return {"release": None}
    manifest = json.loads((path / "manifest.json").read_text())
    kept = {k: v for k, v in manifest.items() if k not in RELEASE_RUN_FIELDS}
    kept["files"] = {k: v for k, v in manifest["files"].items() if k != "README.md"}  # the card names the release
    return {"content_sha256": manifest["content_sha256"],
            "manifest": hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]}


def releases_in(ws: Path) -> int:
    return len(list((ws / "releases").glob("v[0-9][0-9][0-9][0-9]")))


# ---------------------------------------------------------------- the operations


@dataclass
class Operation:
    """One command cut off: how it is run on a workspace, what its finished result is, where it may start from."""

    name: str
    command: Callable[[Path], list[str]]
    env: dict
    digest: Callable[[Path], dict]
    starts: dict[str, Optional[Path]]  # start name -> workspace copied for each run (None: an empty one)
    expected_manifests: set[str] = field(default_factory=set)


# the hivau a campaign runs: a copy of the working tree taken when it starts (so that edits made while it runs do
# not mix versions); None: the installed one (the tests)
PACKAGE: Optional[Path] = None


def hivau(*args: str) -> list[str]:
    if PACKAGE is None:
        return [str(BIN / "hivau"), *args]
    return [sys.executable, "-P", "-m", "hivau.cli", *args]  # -P: the working folder's hivau/ must not shadow it


def clean_env(prefect_env: dict) -> dict:
    """This process's environment without review or LLM settings (a build would push, or call a model), plus the
    campaign's Prefect server."""
    drop = ("LABEL_STUDIO_", "OPENAI_", "HIVAU_LLM_", "HIVAU_VLM_", "PREFECT_", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    if PACKAGE is not None:
        env["PYTHONPATH"] = str(PACKAGE)
    return {**env, **{k: v for k, v in prefect_env.items() if k.startswith("PREFECT_")}}


def review_env(prefect_env: dict, url: str, token: str, document_root: Path) -> dict:
    return {**clean_env(prefect_env), "LABEL_STUDIO_URL": url, "LABEL_STUDIO_API_KEY": token,
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root)}


def build_operation(demo: Path, prefect_env: dict, workers: int = 2,
                    starts: Optional[dict[str, Optional[Path]]] = None) -> Operation:
    def command(ws: Path) -> list[str]:
        return hivau("build", "--videos", str(demo / "videos"), "--annotations", str(demo / "annotations.json"),
                     "--workspace", str(ws), "--rollup", "extractive", "--workers", str(workers))

    return Operation("build", command, clean_env(prefect_env), manifest_digest, starts or {"empty": None})


def pull_operation(env: dict, dataset: str, starts: dict[str, Optional[Path]]) -> Operation:
    """`--dataset`: every copy pulls the projects the pushed workspace made (titles default to the folder name)."""
    return Operation("pull", lambda ws: hivau("review", "pull", "--workspace", str(ws), "--dataset", dataset), env,
                     manifest_digest, starts)


def release_operation(env: dict, starts: dict[str, Optional[Path]]) -> Operation:
    return Operation("release", lambda ws: hivau("release", "--workspace", str(ws), "--include-unreviewed",
                                                 "--no-publish"), env, release_digest, starts)


def copy_start(op: Operation, start_name: str, ws: Path) -> None:
    shutil.rmtree(ws, ignore_errors=True)
    src = op.starts[start_name]
    if src is not None:
        shutil.copytree(src, ws, symlinks=True)


def reference(op: Operation, start_name: str, work: Path, runs: int = 2) -> dict:
    """Uninterrupted runs from the start (a copy each): the first's wall time is the kill window, its digest the
    reference; a second shows that the result repeats."""
    done = []
    for i in range(1, runs + 1):
        ws = work / f"ref-{op.name}-{start_name}-{i}"
        copy_start(op, start_name, ws)
        log = work / f"ref-{op.name}-{start_name}-{i}.log"
        run = run_to_end(op.command(ws), op.env, log, ws)
        if run["rc"] != 0:
            raise RuntimeError(f"uninterrupted {op.name} from {start_name} failed (rc {run['rc']}):\n{tail(log)}")
        done.append({**run, "digest": op.digest(ws), "workspace": str(ws), "problems": check_workspace(ws)})
    first = done[0]
    if not op.expected_manifests and (Path(first["workspace"]) / "manifests").exists():
        op.expected_manifests = {p.name for p in (Path(first["workspace"]) / "manifests").iterdir()}
    return {"seconds": first["seconds"], "seconds_runs": [r["seconds"] for r in done], "lock_at_s": first["lock_at_s"],
            "digest": first["digest"], "repeatable": all(r["digest"] == first["digest"] for r in done) if runs > 1
            else None, "workspace": first["workspace"], "problems": [p for r in done for p in r["problems"]]}


# ---------------------------------------------------------------- trials


def last_stage(log_text: str) -> str:
    """Where a build was when it died, from its Prefect log: in or after the last task that reported."""
    found = re.findall(r"(?:Task run|Flow run) '([A-Za-z_]+?)-[\w-]+' - (Finished|Beginning)", log_text)
    tasks = [(name, what) for name, what in found if "_" in name]
    if not tasks:
        return "start-up" if not found else "flow started"
    name, what = tasks[-1]
    return f"after {name}" if what == "Finished" else f"in {name}"


def wait_for_lock(proc: subprocess.Popen, ws: Path) -> None:
    """Until the command holds the workspace lock (or has ended)."""
    while proc.poll() is None and f"(pid {proc.pid} " not in lock_holder(ws):
        time.sleep(0.01)


def kill_window(ref: dict, window: str) -> tuple[float, float]:
    """`run`: the reference's whole run, from its start; `lock`: the time the reference held the workspace lock,
    counted from the moment the run takes it (so that every kill lands inside the operation)."""
    if window == "lock":
        return 0.0, ref["seconds"] - (ref["lock_at_s"] or 0.0)
    return 0.0, ref["seconds"]


def one_kill(op: Operation, ws: Path, delay_s: float, log: Path, window: str = "run") -> dict:
    """Start the command, cut the power `delay_s` after its start (or after it took the lock), look at the workspace."""
    before = log.stat().st_size if log.is_file() else 0
    started = time.monotonic()
    proc = start(op.command(ws), op.env, log)
    if window == "lock":
        wait_for_lock(proc, ws)
    landed, held = kill_at(proc, delay_s, ws)
    at_s = time.monotonic() - started
    in_lock = landed and f"(pid {proc.pid} " in lock_holder(ws)
    text = log.read_text(errors="replace")[before:] if log.is_file() else ""
    kill = {"at_s": round(at_s, 2), "landed": landed, "rc": proc.returncode, "in_lock": in_lock,
            "phase": None if not landed else PHASES[1] if in_lock else PHASES[2] if held else PHASES[0],
            "releases": releases_in(ws) if op.name == "release" else None}
    if op.name == "build" and landed:
        kill["where"] = last_stage(text)
    kill["problems"] = check_workspace(ws, op.expected_manifests)
    kill["leftovers"] = len(leftovers(ws))
    return kill


def trial(op: Operation, ref: dict, start_name: str, index: int, kills: int, rng: random.Random, work: Path,
          window: str = "run") -> dict:
    """Copy the start, kill `kills` runs at random moments of the reference's window, then run to the end."""
    name = f"{op.name}-{index:03d}"
    ws, log = work / name, work / f"{name}.log"
    log.unlink(missing_ok=True)
    copy_start(op, start_name, ws)
    before = releases_in(ws)
    out = {"trial": index, "start": start_name, "workspace": str(ws), "log": str(log), "kills": []}
    for _ in range(kills):
        out["kills"].append(one_kill(op, ws, rng.uniform(*kill_window(ref, window)), log, window))
    final = run_to_end(op.command(ws), op.env, log, ws)
    out["resume"] = {**final, "problems": check_workspace(ws, op.expected_manifests), "leftovers": leftovers(ws)}
    out["readable"] = not any(k["problems"] for k in out["kills"])
    digest = op.digest(ws) if final["rc"] == 0 else None
    out["same"] = final["rc"] == 0 and digest == ref["digest"] and not out["resume"]["problems"]
    if op.name == "release":  # a release the kill let finish stays; the re-run then writes the next one
        out["releases_written"] = releases_in(ws) - before
    if not out["same"]:
        out["digest"], out["reference_digest"] = digest, ref["digest"]
        out["log_tail"] = tail(log)
    return out


def plan(target: int, starts: list[str], cycle: tuple[int, ...]) -> list[tuple[str, int]]:
    """Trials in turn: the kills-per-trial cycle, the start states alternating."""
    return [(starts[i % len(starts)], cycle[i % len(cycle)]) for i in range(4 * target)]


def kill_trials(op: Operation, refs: dict[str, dict], target: int, seed: int, work: Path, window: str = "run",
                cycle: tuple[int, ...] = KILLS_PER_TRIAL, keep: bool = False,
                say: Callable[[str], None] = print) -> dict:
    """Trials until `target` kills landed (a kill drawn after the run finished is a miss); their summary."""
    rng = random.Random(f"{seed}:{op.name}")
    trials, landed = [], 0
    for index, (start_name, kills) in enumerate(plan(target, list(op.starts), cycle)):
        if landed >= target:
            break
        t = trial(op, refs[start_name], start_name, index, min(kills, target - landed), rng, work, window)
        trials.append(t)
        landed += sum(k["landed"] for k in t["kills"])
        ok = t["readable"] and t["same"]
        say(f"  {op.name} {index:3d} ({start_name}): kills at " + ", ".join(
            f"{k['at_s']:.1f}s {k['phase'] or 'missed'}"
            + (f" {k['where']}" if k.get("where") else "") for k in t["kills"])
            + f"; resumed rc {t['resume']['rc']} in {t['resume']['seconds']:.1f}s: {'same' if t['same'] else 'DIFFERENT'}"
            + ("" if t["readable"] else " UNREADABLE after a kill") + f" ({landed}/{target})")
        if ok and not keep:
            shutil.rmtree(t["workspace"], ignore_errors=True)
    return summarise(op, refs, trials)


def summarise(op: Operation, refs: dict[str, dict], trials: list[dict]) -> dict:
    kills = [k for t in trials for k in t["kills"]]
    hits = [k for k in kills if k["landed"]]
    failures = []
    for t in trials:
        for i, k in enumerate(t["kills"]):
            if k["problems"]:
                failures.append({"trial": t["trial"], "after_kill": i + 1, "at_s": k["at_s"], "what": "unreadable",
                                 "problems": k["problems"], "workspace": t["workspace"], "log": t["log"]})
        if not t["same"]:
            failures.append({"trial": t["trial"], "what": "resumed to a different result" if t["resume"]["rc"] == 0
                             else f"re-run failed (rc {t['resume']['rc']})", "kills_at_s": [k["at_s"] for k in t["kills"]],
                             "problems": t["resume"]["problems"], "digest": t.get("digest"),
                             "reference_digest": t.get("reference_digest"), "workspace": t["workspace"],
                             "log": t["log"], "log_tail": t.get("log_tail", "")[-1500:]})
    out = {"kills": len(hits), "kills_missed": len(kills) - len(hits), "kills_in_lock": sum(k["in_lock"] for k in hits),
           "kills_by_phase": {phase: sum(k["phase"] == phase for k in hits) for phase in PHASES},
           "trials": len(trials), "trials_by_kills": dict(Counter(str(sum(k["landed"] for k in t["kills"]))
                                                                   for t in trials)),
           "readable_after_every_kill": sum(t["readable"] for t in trials),
           "resumed": sum(t["resume"]["rc"] == 0 for t in trials),
           "resumed_to_same": sum(t["same"] for t in trials),
           "leftovers_after_kill_max": max((k["leftovers"] for k in kills), default=0),
           "leftovers_after_resume": sorted({p for t in trials for p in t["resume"]["leftovers"]}),
           "references": {name: {k: v for k, v in ref.items() if k != "workspace"} for name, ref in refs.items()},
           "references_agree": len({json.dumps(r["digest"], sort_keys=True) for r in refs.values()}) == 1,
           "failures": failures, "trials_detail": trials}
    if op.name == "build":
        out["where"] = dict(Counter(k["where"] for k in hits))
    if op.name == "release":
        out["releases_written"] = dict(Counter(str(t.get("releases_written")) for t in trials))
    return out


# ---------------------------------------------------------------- the services and the data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prefect(home: Path) -> tuple[subprocess.Popen, dict]:
    """`prefect server start` with its own home and database, as tests/conftest.py's `prefect_server`."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    proc = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                 home / "server.log")
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).read()
            return proc, env
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"Prefect server did not start:\n{tail(home / 'server.log')}")
            time.sleep(0.5)


def start_label_studio(state: Path, document_root: Path) -> tuple[subprocess.Popen, dict]:
    from hivau import labelstudio_local as lsl

    port = free_port()
    proc, creds = lsl.start(state, port, document_root)
    url = f"http://127.0.0.1:{port}"
    lsl.wait_healthy(url, proc, timeout_s=300)
    return proc, {"url": url, "token": creds["token"], "document_root": document_root}


def stop(proc: Optional[subprocess.Popen]) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def review_some(url: str, token: str, dataset: str) -> dict[str, int]:
    """Reviews of every kind a pull stores and merges: accepted, edited and rejected captions, an edited event, an
    event whose start moved 1 s later (re-cut by the pull), an accepted video."""
    from pydantic import SecretStr

    from hivau.tasks.review.labelstudio import Connection, LabelStudio
    from hivau.tasks.review.projects import ReviewSettings
    from hivau.tasks.review.results import seconds_to_frames
    from hivau.workspace import Workspace

    st = ReviewSettings(dataset=dataset)
    with LabelStudio(Connection(url, SecretStr(token))) as lsc:
        ids = {p["title"]: p["id"] for p in lsc.projects()}
        tasks = {level: sorted(lsc.iter_tasks(ids[st.project_title(Workspace.at("."), level)]), key=lambda t: t["id"])
                 for level in ("clip", "event", "video")}
        captioned = [t for t in tasks["clip"] if t["predictions"] and t["predictions"][-1]["result"]]
        annotate(lsc, captioned[0], "accept")
        annotate(lsc, captioned[1], "accept", {"caption": "A person in grey walks to the left, then stops."})
        annotate(lsc, captioned[2], "reject")
        anomalous = [t for t in tasks["event"] if t["data"]["labels"] not in ("none", "Normal")]
        annotate(lsc, anomalous[0], "accept", {"description": "Two people meet near the door.",
                                               "a_why": "Because one of them acts unlike the others."})
        data = anomalous[1]["data"]
        f0, f1 = seconds_to_frames(data["start_s"] - data["offset_s"], data["end_s"] - data["offset_s"], data["fps"])
        annotate(lsc, anomalous[1], "accept", timeline=(f0 + round(data["fps"]), f1))
        annotate(lsc, tasks["video"][0], "accept")
    return {"clip": 3, "event": 2, "video": 1}


def push_for_review(ws: Path, env: dict, dataset: str, log: Path) -> None:
    done = subprocess.run(hivau("review", "push", "--workspace", str(ws), "--dataset", dataset), env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"review push failed:\n{tail(log)}")


# ---------------------------------------------------------------- the kills subcommand


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def say(text: str) -> None:
    print(text, flush=True)


def campaign_services(root: Path) -> tuple[list[subprocess.Popen], dict, dict]:
    prefect, prefect_env = start_prefect(root / "prefect-home")
    say(f"Prefect server at {prefect_env['PREFECT_API_URL']}")
    ls_proc, ls = start_label_studio(root / "label-studio", root / "review-root")
    say(f"Label Studio at {ls['url']}")
    return [prefect, ls_proc], prefect_env, ls


def setup_build(root: Path, demo: Path, prefect_env: dict, workers: int) -> tuple[Operation, dict]:
    op = build_operation(demo, prefect_env, workers)
    refs = {"empty": reference(op, "empty", root)}
    op.starts["built"] = Path(refs["empty"]["workspace"])  # a re-build over a finished workspace
    refs["built"] = reference(op, "built", root)
    return op, refs


def setup_pull(root: Path, built: Path, prefect_env: dict, ls: dict) -> tuple[Operation, dict, Path]:
    pushed = ls["document_root"] / "faults"
    shutil.copytree(built, pushed, symlinks=True)
    env = review_env(prefect_env, ls["url"], ls["token"], ls["document_root"])
    push_for_review(pushed, env, "faults", root / "push.log")
    reviewed = review_some(ls["url"], ls["token"], "faults")
    say(f"pushed {pushed} and reviewed {reviewed}")
    op = pull_operation(env, "faults", {"pushed": pushed})
    refs = {"pushed": reference(op, "pushed", root)}
    return op, refs, Path(refs["pushed"]["workspace"])


def setup_release(root: Path, pulled: Path, prefect_env: dict) -> tuple[Operation, dict]:
    op = release_operation(clean_env(prefect_env), {"unreleased": pulled})
    refs = {"unreleased": reference(op, "unreleased", root)}
    op.starts["released"] = Path(refs["unreleased"]["workspace"])  # the next release, v0002, is the one cut off
    refs["released"] = reference(op, "released", root)
    return op, refs


def headline(results: dict) -> str:
    lines = ["| operation | kills | before / inside / after the lock | missed | trials | readable after every kill "
             "| resumed to the same result |", "|---|---|---|---|---|---|---|"]
    for name, r in [*results["operations"].items(), ("all", results["total"])]:
        phases = " / ".join(str(r["kills_by_phase"][p]) for p in PHASES)
        lines.append(f"| {name} | {r['kills']} | {phases} | {r['kills_missed']} | {r['trials']} | "
                     f"{r['readable_after_every_kill']}/{r['trials']} | {r['resumed_to_same']}/{r['trials']} |")
    return "\n".join(lines)


def run_kills(args: argparse.Namespace) -> None:
    global PACKAGE
    from bench_release import export_version

    started, load_start = time.monotonic(), load()
    targets = dict(zip(("build", "pull", "release"), (int(x) for x in args.kills.split(","))))
    root = (args.work or Path(tempfile.mkdtemp(prefix="hivau-kills-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    version = export_version("worktree", root / "snap")
    PACKAGE = root / "snap" / "pkg"
    where = imported_from(clean_env({}))
    if not where.startswith(str(PACKAGE)):
        raise RuntimeError(f"the campaign's hivau comes from {where}, not from its copy {PACKAGE}")
    say(f"work folder {root}; hivau {version}; load {load_start}")
    services = []
    try:
        services, prefect_env, ls = campaign_services(root)
        demo = root / "demo"
        subprocess.run(hivau("demo-data", str(demo), "--no-faults", "--sets", str(args.sets)), check=True,
                       capture_output=True)
        ops = {}
        build, refs = setup_build(root, demo, prefect_env, args.workers)
        ops["build"] = build, refs
        pull, pull_refs, pulled = setup_pull(root, Path(refs["empty"]["workspace"]), prefect_env, ls)
        ops["pull"] = pull, pull_refs
        ops["release"] = setup_release(root, pulled, prefect_env)
        for name, (op, op_refs) in ops.items():
            say(f"{name}: references " + ", ".join(f"{s} {r['seconds']:.1f}s (lock at {r['lock_at_s']}s, "
                                                   f"repeatable {r['repeatable']}, problems {r['problems']})"
                                                   for s, r in op_refs.items()))
        results = {"version": version, "machine": machine(), "seed": args.seed, "sets": args.sets, "workers": args.workers,
                   "window": args.window,
                   "targets": targets, "load_start": load_start, "operations": {}}
        for name, (op, op_refs) in ops.items():
            if targets.get(name):
                results["operations"][name] = kill_trials(op, op_refs, targets[name], args.seed, root, args.window,
                                                          keep=args.keep, say=say)
    finally:
        for proc in reversed(services):
            stop(proc)
    ops_done = results["operations"].values()
    results["total"] = {k: sum(r[k] for r in ops_done) for k in ("kills", "kills_in_lock", "kills_missed", "trials",
                                                                 "readable_after_every_kill", "resumed_to_same")}
    results["total"]["kills_by_phase"] = {p: sum(r["kills_by_phase"][p] for r in ops_done) for p in PHASES}
    results["failures"] = sum(len(r["failures"]) for r in ops_done)
    results["load_end"], results["seconds"] = load(), round(time.monotonic() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    say(headline(results))
    say(f"{results['failures']} failures; {results['seconds']} s; results in {args.out}; work folder {root}")


# ---------------------------------------------------------------- stops: Ctrl-C and SIGTERM on a 1,000-video build
STOP_CAP_S = 60.0  # a build still running this long after the signal is killed and reported as "> 60 s"
STOP_CASES = [("none", "ctrl-c"), ("none", "sigterm"), ("server", "ctrl-c"), ("server", "sigterm")]
STOP_MOMENTS = {"start": "1 s after the build took the workspace (ingest, start of the cut)",
                "mid-cut": "once 300 segments are cut"}


def version_env(pkg: Path, server_url: Optional[str], home: Path) -> dict:
    """One version of hivau on the path (PYTHONPATH), with or without a Prefect server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "PYTHONPATH"}
    env.update({"PYTHONPATH": str(pkg), "PYTHONDONTWRITEBYTECODE": "1", "PREFECT_HOME": str(home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    if server_url:
        env["PREFECT_API_URL"] = server_url
    return env


def imported_from(env: dict) -> str:
    out = subprocess.run([sys.executable, "-c", "import hivau; print(hivau.__file__)"], env=env, capture_output=True,
                         text=True, cwd=tempfile.gettempdir(), check=True)
    return out.stdout.strip()


def segments_cut(ws: Path) -> int:
    folder = ws / "state" / "segments"
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def wait_for(moment: str, ws: Path, proc: subprocess.Popen) -> None:
    lock = ws / "state" / "workspace.lock"
    while proc.poll() is None:
        held = lock.is_file() and "build-hivau" in lock.read_text()
        if moment == "start" and held:
            time.sleep(1.0)
            return
        if moment == "mid-cut" and segments_cut(ws) >= 300:
            return
        time.sleep(0.05)
    raise RuntimeError(f"the build ended before the moment '{moment}'")


def signal_and_time(proc: subprocess.Popen, how: str) -> Optional[float]:
    """Ctrl-C (SIGINT to the whole foreground process group, as a terminal sends) or SIGTERM (to the process, as
    timeout, systemd or a scheduler send); seconds to exit, None past STOP_CAP_S (then its tree is killed)."""
    started = time.monotonic()
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_CAP_S)
        return round(time.monotonic() - started, 2)
    except subprocess.TimeoutExpired:
        power_cut(proc)
        return None


def stop_trial(env: dict, videos: Path, annotations: Path, ws: Path, how: str, moment: str, log: Path) -> dict:
    """Start a build, signal it at `moment`, and time its exit (and whether the workspace is free after)."""
    shutil.rmtree(ws, ignore_errors=True)
    cmd = [sys.executable, "-m", "hivau.cli", "build", "--videos", str(videos), "--annotations", str(annotations),
           "--workspace", str(ws), "--cut-mode", "copy", "--workers", "2", "--rollup", "extractive"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir(),
                                start_new_session=True)
    wait_for(moment, ws, proc)
    at_signal = segments_cut(ws)
    exit_s = signal_and_time(proc, how)
    return {"exit_s": exit_s, "returncode": proc.returncode, "segments_at_signal": at_signal,
            "segments_after": segments_cut(ws), "lock_free": lock_free(ws),
            "servers_left": servers_left(Path(env["PREFECT_HOME"]))}


def servers_left(home: Path, grace_s: float = 5.0) -> int:
    """Temporary Prefect servers of this home still running `grace_s` after the build exited (then stopped)."""
    import psutil

    time.sleep(grace_s)
    left = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "prefect.server.api.server:create_app" in " ".join(p.info["cmdline"] or []) and \
                    p.environ().get("PREFECT_HOME") == str(home):
                left.append(p)
        except psutil.Error:
            continue
    for p in left:
        p.kill()
    return len(left)


def lock_free(ws: Path) -> bool:
    import fcntl

    path = ws / "state" / "workspace.lock"
    if not path.is_file():
        return True
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
    return True


def run_stops(args: argparse.Namespace) -> None:
    from bench_release import export_version
    from bench_scale import make_batch

    root = Path(args.work)
    root.mkdir(parents=True, exist_ok=True)
    videos, annotations = (root / "batch" / "videos", root / "batch" / "annotations.json")
    if not annotations.is_file():
        shutil.rmtree(root / "batch", ignore_errors=True)
        make_batch(root / "batch", args.videos)
    versions = {"baseline": args.baseline, "current": "worktree"} if args.baseline != "none" else {"current": "worktree"}
    labels = {name: export_version(rev, root / f"snap-{name}") for name, rev in versions.items()}
    server, server_env = start_prefect(root / "prefect-server")
    url = server_env["PREFECT_API_URL"]
    rows = []
    try:
        for repeat in range(args.repeats):
            for moment in STOP_MOMENTS:
                for prefect, how in STOP_CASES:
                    for name in versions:  # side by side: the baseline and this version at the same moment
                        env = version_env(root / f"snap-{name}" / "pkg", url if prefect == "server" else None,
                                          root / f"home-{name}")
                        if repeat == 0 and moment == "start" and (prefect, how) == STOP_CASES[0]:
                            print(f"{name}: hivau from {imported_from(env)}", flush=True)
                        row = stop_trial(env, videos, annotations, root / f"ws-{name}", how, moment,
                                         root / f"{name}-{moment}-{prefect}-{how}.log")
                        row.update(version=name, moment=moment, prefect=prefect, signal=how, repeat=repeat)
                        print(json.dumps(row), flush=True)
                        rows.append(row)
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {"videos": args.videos, "labels": labels, "cap_s": STOP_CAP_S, "moments": STOP_MOMENTS, "rows": rows,
              "machine": f"{os.cpu_count()} cores"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(stops_table(result))


def stops_table(result: dict) -> str:
    """Markdown: per case and moment, the baseline's and this version's exit times (worst of the repeats)."""
    def worst(rows):
        times = [r["exit_s"] for r in rows]
        if not rows:
            return "-"
        return f"> {result['cap_s']:.0f} s (killed then)" if None in times else f"{max(times):.1f} s"

    lines = ["| Prefect server | signal | moment | baseline | this version | lock free after | temporary servers left "
             "(baseline / this) |", "|---|---|---|---|---|---|---|"]
    for moment in result["moments"]:
        for prefect, how in STOP_CASES:
            pick = lambda v: [r for r in result["rows"] if (r["version"], r["moment"], r["prefect"], r["signal"])  # noqa: E731
                              == (v, moment, prefect, how)]
            left = [sum(r["servers_left"] for r in pick(v)) if pick(v) and all("servers_left" in r for r in pick(v)) else "-"
                    for v in ("baseline", "current")]  # (not counted by the first runs)
            lines.append(f"| {'temporary' if prefect == 'none' else 'own'} | {how} | {moment} | {worst(pick('baseline'))} "
                         f"| {worst(pick('current'))} | {all(r['lock_free'] for r in pick('current'))} "
                         f"| {left[0]} / {left[1]} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- commands: Ctrl-C and SIGTERM on the other commands
COMMAND_MOMENTS = {"lock": "once it holds the workspace lock (its work has begun)",
                   "step 3": "once its log shows training step 3"}


def make_scorer(out: Path) -> Path:
    """A tiny HivauVLM saved as `hivau propose --model` loads it (as tests/test_faults_stop.py makes it)."""
    import torch

    from hivau.models.composed_vlm import HivauVLM
    from hivau.models.io import save_model
    from hivau.models.presets import tiny, train_tokenizer

    torch.manual_seed(0)
    model = HivauVLM(tiny(300, image_size=64, d_vision=64, d_lm=64), train_tokenizer(["a person walks."] * 5, 300))
    save_model(model, out, card="# bench_faults scorer\n")
    return out


def command_cases(root: Path, prefect_env: dict, ls: dict) -> dict[str, dict]:
    """name -> start workspace, command (for a workspace and a trial number), environment and moment."""
    demo = root / "demo"
    subprocess.run(hivau("demo-data", str(demo), "--no-faults"), check=True, capture_output=True)
    env, renv = clean_env(prefect_env), review_env(prefect_env, ls["url"], ls["token"], ls["document_root"])
    built = ls["document_root"] / "built"  # under the document root: Label Studio serves a push's media from there
    if run_to_end(build_operation(demo, prefect_env).command(built), env, root / "build.log", built)["rc"] != 0:
        raise RuntimeError(f"the build failed: {tail(root / 'build.log')}")
    pushed = ls["document_root"] / "pushed"
    shutil.copytree(built, pushed, symlinks=True)
    push_for_review(pushed, renv, "stops", root / "push.log")
    review_some(ls["url"], ls["token"], "stops")
    pulled = root / "pulled"
    shutil.copytree(pushed, pulled, symlinks=True)
    pull = pull_operation(renv, "stops", {})
    released = root / "released"
    for cmd, ws in ((pull.command(pulled), pulled), (release_operation(env, {}).command(released), released)):
        if ws == released:
            shutil.copytree(pulled, released, symlinks=True)
        done = run_to_end(cmd, pull.env if ws == pulled else env, root / f"{ws.name}.log", ws)
        if done["rc"] != 0:
            raise RuntimeError(f"setting up {ws.name} failed: {tail(root / f'{ws.name}.log')}")
    unlabelled = root / "unlabelled"
    run_to_end(hivau("build", "--videos", str(demo / "videos"), "--workspace", str(unlabelled), "--format", "none",
                     "--rollup", "extractive"), env, root / "unlabelled.log", unlabelled)
    scorer = make_scorer(root / "scorer")
    (release,) = sorted((released / "releases").glob("v[0-9]*"))
    train = ["--release", str(release), "--preset", "tiny", "--batch-size", "2", "--scorer-epochs", "2",
             "--log-every", "1", "--num-threads", "1", "--workers", "1", "--max-steps", "400",
             "--preset-options", '{"image_size": 64}']
    return {
        "review push": {"start": built, "env": renv, "moment": "lock", "in_document_root": True,
                        "cmd": lambda ws, i: hivau("review", "push", "--workspace", str(ws), "--dataset",
                                                   f"stop-{i}", "--batch-size", "1")},
        "review pull": {"start": pushed, "env": renv, "moment": "lock", "cmd": lambda ws, i: pull.command(ws)},
        "release": {"start": pulled, "env": env, "moment": "lock",
                    "cmd": lambda ws, i: release_operation(env, {}).command(ws)},
        "propose": {"start": unlabelled, "env": env, "moment": "lock",
                    "cmd": lambda ws, i: hivau("propose", "--workspace", str(ws), "--model", str(scorer),
                                               "--no-push")},
        "hivau-train": {"start": None, "env": {**env, "OMP_NUM_THREADS": "1"}, "moment": "step 3",
                        "cmd": lambda ws, i: [sys.executable, "-P", "-m", "hivau.models.train", *train,
                                              "--out", str(ws)]},
    }


def command_trial(case: dict, ws: Path, index: int, how: str, log: Path) -> dict:
    shutil.rmtree(ws, ignore_errors=True)
    if case["start"] is not None:
        shutil.copytree(case["start"], ws, symlinks=True)
    proc = start(case["cmd"](ws, index), case["env"], log)
    if case["moment"] == "lock":
        wait_for_lock(proc, ws)
    else:
        while proc.poll() is None and '"step": 3,' not in log.read_text():
            time.sleep(0.02)
    if proc.poll() is not None:
        return {"exit_s": None, "returncode": proc.returncode, "note": "ended before the moment", "log": str(log)}
    exit_s = signal_and_time(proc, how)
    text = log.read_text()
    return {"exit_s": exit_s, "returncode": proc.returncode, "said_how_to_resume": "Resume with:" in text,
            "lock_free": lock_free(ws)}


def run_commands(args: argparse.Namespace) -> None:
    global PACKAGE
    from bench_release import export_version

    root = (args.work or Path(tempfile.mkdtemp(prefix="hivau-commands-"))).resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    version = export_version("worktree", root / "snap")
    PACKAGE = root / "snap" / "pkg"
    say(f"work folder {root}; hivau {version}; load {load()}")
    services, rows = [], []
    try:
        services, prefect_env, ls = campaign_services(root)
        cases = command_cases(root, prefect_env, ls)
        for folder in ("logs", "trials"):
            (root / folder).mkdir()
        for name, case in cases.items():
            for how in ("ctrl-c", "sigterm"):
                for repeat in range(args.repeats):
                    index = len(rows)
                    folder = ls["document_root"] if case.get("in_document_root") else root / "trials"
                    row = command_trial(case, folder / f"t{index}", index, how, root / "logs" / f"t{index}.log")
                    row.update(command=name, signal=how, repeat=repeat, moment=COMMAND_MOMENTS[case["moment"]])
                    rows.append(row)
                    say(f"  {name:12} {how:8} {row['exit_s']} s rc {row['returncode']} "
                        f"lock free {row.get('lock_free')} resume line {row.get('said_how_to_resume')}")
    finally:
        for proc in reversed(services):
            stop(proc)
    result = {"version": version, "machine": machine(), "repeats": args.repeats, "load_end": load(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    lines = ["| command | moment | Ctrl-C: seconds to exit (worst) | SIGTERM: seconds to exit (worst) | exit codes "
             "| lock free after | resume command printed |", "|---|---|---|---|---|---|---|"]
    for name in cases:
        mine = [r for r in rows if r["command"] == name]
        worst = {how: max((r["exit_s"] if r["exit_s"] is not None else float("inf"))
                          for r in mine if r["signal"] == how) for how in ("ctrl-c", "sigterm")}
        lines.append(f"| {name} | {mine[0]['moment']} | {worst['ctrl-c']} | {worst['sigterm']} | "
                     f"{sorted({r['returncode'] for r in mine})} | {all(r.get('lock_free') for r in mine)} | "
                     f"{all(r.get('said_how_to_resume') for r in mine)} |")
    say("\n".join(lines))
    say(f"results in {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    kills = sub.add_parser("kills", help="kill -9 at random moments of builds, pulls and releases; resume; compare")
    kills.add_argument("--kills", default="50,25,25", help="kills to land per operation: build,pull,release")
    kills.add_argument("--seed", type=int, default=0)
    kills.add_argument("--sets", type=int, default=1, help="demo sets of 8 videos")
    kills.add_argument("--workers", type=int, default=2, help="hivau build --workers")
    kills.add_argument("--window", choices=("run", "lock"), default="run",
                       help="kill moments drawn over the whole run, or from when it took the workspace lock")
    kills.add_argument("--work", type=Path, help="work folder (default: a new temporary folder)")
    kills.add_argument("--keep", action="store_true", help="keep every trial's workspace (failed ones are kept)")
    kills.add_argument("--out", type=Path, default=RESULTS_KILLS, help="results JSON")
    kills.set_defaults(func=run_kills)
    stops = sub.add_parser("stops", help="Ctrl-C and SIGTERM on a build of N videos: seconds to exit, baseline beside")
    stops.add_argument("--videos", type=int, default=1000)
    stops.add_argument("--repeats", type=int, default=3)
    stops.add_argument("--baseline", default="891235c", help="the version measured beside this one (a git rev; "
                       "none: this one alone)")
    stops.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "hivau-bench-stops"))
    stops.add_argument("--out", type=Path, default=RESULTS_STOPS)
    stops.set_defaults(func=run_stops)
    commands = sub.add_parser("commands", help="Ctrl-C and SIGTERM on review push/pull, release, propose and "
                              "hivau-train: seconds to exit")
    commands.add_argument("--repeats", type=int, default=3)
    commands.add_argument("--work", type=Path, help="work folder (default: a new temporary folder)")
    commands.add_argument("--out", type=Path, default=RESULTS_COMMANDS)
    commands.set_defaults(func=run_commands)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
