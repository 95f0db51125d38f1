"""Push and pull of 10,000 review tasks against a real local Label Studio: batched vs one task per request.

    .venv/bin/python benchmarks/bench_review.py [--tasks 10000] [--baseline 300]

The baseline (one import request per task, one GET per task on pull) runs on `--baseline` tasks and is
compared as tasks per second, side by side with the batched path, in the same server.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

from hivau import labelstudio_local as lsl  # noqa: E402
from hivau.review_ui_config import load_config  # noqa: E402
from hivau.tasks.labelstudio import Connection, LabelStudio  # noqa: E402
from hivau.tasks.review import ReviewSettings, ReviewTask, pull, push_level, textarea  # noqa: E402
from hivau.workspace import Workspace  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clip_tasks(n: int, prefix: str) -> list[ReviewTask]:
    return [ReviewTask(f"{prefix}_{i:05d}_E0C0", "clip",
                       {"item_id": f"{prefix}_{i:05d}_E0C0", "video_id": f"{prefix}_{i:05d}", "labels": "Fighting",
                        "video": "/data/local-files/?d=ws/media/clips/x.mp4", "fps": 25.0, "offset_s": 0.0,
                        "start_s": 0.0, "end_s": 2.0},
                       textarea("caption", f"A person in a red shirt walks to the left, clip {i}."), "bench@1")
            for i in range(n)]


def annotated(task: ReviewTask, i: int) -> dict:
    payload = task.payload()
    verdict = {"from_name": "verdict", "to_name": "video", "type": "choices", "value": {"choices": ["accept"]}}
    text = textarea("caption", f"Edited caption {i}.") if i % 3 == 0 else task.result
    payload["annotations"] = [{"result": text + [verdict]}]
    return payload


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hivau-bench-review-"))
    port, root = free_port(), tmp / "root"
    ws = Workspace.at(root / "ws")
    (ws.media / "clips").mkdir(parents=True)
    proc, creds = lsl.start(tmp / "state", port, root)
    url = f"http://127.0.0.1:{port}"
    try:
        lsl.wait_healthy(url, proc)
        ls = LabelStudio(Connection(url, SecretStr(creds["token"])), timeout_s=600)
        st = ReviewSettings(enabled="on", url=url, document_root=str(root))

        # push: batched import of every task vs one request per task
        batched = ls.create_project("bench push batched", load_config("clip"))["id"]
        tasks = clip_tasks(args.tasks, "b")
        t0 = time.perf_counter()
        created, _, _ = push_level(ls, batched, tasks, args.batch_size)
        push_s = time.perf_counter() - t0
        assert created == args.tasks
        t0 = time.perf_counter()
        again = push_level(ls, batched, tasks, args.batch_size)
        repush_s = time.perf_counter() - t0
        assert again == (0, 0, args.tasks)
        single = ls.create_project("bench push single", load_config("clip"))["id"]
        t0 = time.perf_counter()
        push_level(ls, single, clip_tasks(args.baseline, "s"), batch_size=1)
        single_s = time.perf_counter() - t0

        # pull: every task annotated (a third edited); one export request vs one GET per task
        title = st.project_title(ws, "clip")
        project = ls.create_project(title, load_config("clip"))["id"]
        for i in range(0, args.tasks, args.batch_size):
            ls.import_tasks(project, [annotated(t, i + j) for j, t in enumerate(tasks[i:i + args.batch_size])])
        t0 = time.perf_counter()
        report = pull(ws, ls, st)
        pull_s = time.perf_counter() - t0
        assert report.new_or_changed["clip"] == args.tasks
        t0 = time.perf_counter()
        report = pull(ws, ls, st)
        repull_s = time.perf_counter() - t0
        assert report.new_or_changed["clip"] == 0
        ids = [t["id"] for t in ls.iter_tasks(project)][:args.baseline]
        t0 = time.perf_counter()
        for task_id in ids:
            ls._send("GET", f"/api/tasks/{task_id}")
        get_s = time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    push_rate, single_rate = args.tasks / push_s, args.baseline / single_s
    pull_rate, get_rate = args.tasks / pull_s, args.baseline / get_s
    lines = [
        "## Review push and pull (Label Studio 1.23.2, local SQLite, this 2-core machine)", "",
        f"`benchmarks/bench_review.py --tasks {args.tasks} --baseline {args.baseline}`: clip tasks with a caption "
        f"prediction; batches of {args.batch_size}. Baseline: the same code with one task per request, on "
        f"{args.baseline} tasks, against the same server.", "",
        "| path | tasks | seconds | tasks/s | vs baseline |", "|---|---|---|---|---|",
        f"| push, one task per import request (baseline) | {args.baseline} | {single_s:.1f} | {single_rate:.1f} | 1.0x |",
        f"| push, batched import | {args.tasks} | {push_s:.1f} | {push_rate:.1f} | **{push_rate / single_rate:.1f}x** |",
        f"| push again (nothing new: one paged listing) | {args.tasks} | {repush_s:.1f} | {args.tasks / repush_s:.1f} | "
        f"{args.tasks / repush_s / single_rate:.1f}x |",
        f"| pull, one GET per task (baseline) | {args.baseline} | {get_s:.1f} | {get_rate:.1f} | 1.0x |",
        f"| pull, one export + merge + store reviews | {args.tasks} | {pull_s:.1f} | {pull_rate:.1f} | "
        f"**{pull_rate / get_rate:.1f}x** |",
        f"| pull again (nothing new: nothing written) | {args.tasks} | {repull_s:.1f} | {args.tasks / repull_s:.1f} | "
        f"{args.tasks / repull_s / get_rate:.1f}x |",
    ]
    write_section("review", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
