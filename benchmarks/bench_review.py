"""Review at scale against a real local Label Studio: push, a changed-draft re-push and a pull of N clip tasks.

    .venv/bin/python benchmarks/bench_review.py [--tasks 70000] [--baseline 300]

Push imports the tasks in bulk; the re-push changes a tenth of the drafts (new predictions, in bulk); the
pull reads an export snapshot of N annotated tasks (a third edited), streamed to disk, and stores every
annotation, in a child process whose peak RSS is the pull's memory. The baseline is the same server driven
one request per task (one import per task, one prediction per task, one GET per task) on `--baseline`
tasks (the re-push changing a tenth of them too), side by side, reported as seconds per 1,000 tasks.
"""

from __future__ import annotations

import argparse
import json
import resource
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
from hivau.schemas.records import segment_key  # noqa: E402
from hivau.tasks.review.labelstudio import Connection, LabelStudio  # noqa: E402
from hivau.tasks.review.projects import ReviewSettings  # noqa: E402
from hivau.tasks.review.push import ReviewTask, push_level  # noqa: E402
from hivau.tasks.review.results import textarea  # noqa: E402
from hivau.workspace import Workspace  # noqa: E402

PULL_CHILD = """
import json, resource, sys, time
from pydantic import SecretStr
from hivau.tasks.review.labelstudio import Connection, LabelStudio
from hivau.tasks.manifests import pull_and_merge
from hivau.tasks.review.projects import ReviewSettings
from hivau.workspace import Workspace
url, token, root, ws = sys.argv[1:5]
ls = LabelStudio(Connection(url, SecretStr(token)), timeout_s=600)
t0 = time.perf_counter()
settings = ReviewSettings(enabled="on", url=url, document_root=root, levels=["clip"])
report = pull_and_merge(Workspace.at(ws), ls, settings)
print(json.dumps({"seconds": time.perf_counter() - t0, "new_or_changed": report.new_or_changed,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clip_tasks(n: int, prefix: str, version: str = "draft") -> list[ReviewTask]:
    out = []
    for i in range(n):
        video, start, end = f"{prefix}{i // 14:05d}", 2.0 * (i % 14), 2.0 * (i % 14) + 2.0
        key = segment_key("clip", video, start, end)
        result = textarea("caption", f"A person in a red shirt walks to the left ({version} {i}).")
        out.append(ReviewTask(f"{video}_E0C{i % 14}", "clip", key,
                              {"item_id": f"{video}_E0C{i % 14}", "key": key, "video_id": video, "labels": "Fighting",
                               "video": "/data/local-files/?d=ws/media/clips/x.mp4", "fps": 25.0, "offset_s": start,
                               "start_s": start, "end_s": end, "flags": "No failed checks.", "errors": 0,
                               "warnings": 0, "checks": ""},
                              result, "bench@1", result[0]["value"]["text"][0], ("openai",)))
    return out


def redrafted(task: ReviewTask, text: str) -> ReviewTask:
    return ReviewTask(task.item_id, task.level, task.key, dict(task.data), textarea("caption", text), "bench@2", text,
                      ("openai",))


def annotated(task: ReviewTask, i: int) -> dict:
    payload = task.payload()
    verdict = {"from_name": "verdict", "to_name": "video", "type": "choices", "value": {"choices": ["accept"]}}
    text = textarea("caption", f"Edited caption {i}.") if i % 3 == 0 else task.result
    payload["annotations"] = [{"result": text + [verdict], "lead_time": 12.5}]
    return payload


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def per_1000(seconds: float, n: int) -> float:
    return round(1000 * seconds / n, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=70_000)
    parser.add_argument("--baseline", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    n, b = args.tasks, args.baseline

    tmp = Path(tempfile.mkdtemp(prefix="hivau-bench-review-"))
    port, root = free_port(), tmp / "root"
    ws = Workspace.at(root / "ws")
    (ws.media / "clips").mkdir(parents=True)
    proc, creds = lsl.start(tmp / "state", port, root)
    url = f"http://127.0.0.1:{port}"
    try:
        lsl.wait_healthy(url, proc)
        ls = LabelStudio(Connection(url, SecretStr(creds["token"])), timeout_s=600)
        st = ReviewSettings(enabled="on", url=url, document_root=str(root), batch_size=args.batch_size, audit_size=50)
        one = st.model_copy(update={"batch_size": 1})

        # push, bulk: every task new; then a tenth of the drafts changed
        bulk = ls.create_project("bench push bulk", load_config("clip"))["id"]
        tasks = clip_tasks(n, "b")
        (created, *_), push_s = timed(lambda: push_level(ls, bulk, "clip", tasks, st, "bench"))
        assert created == n, created
        changed = [t if i % 10 else redrafted(t, f"changed draft {i}") for i, t in enumerate(tasks)]
        (_, new_predictions, same, _, _), repush_s = timed(lambda: push_level(ls, bulk, "clip", changed, st, "bench"))
        assert new_predictions == len(range(0, n, 10)) and same == n - new_predictions, (new_predictions, same)

        # the same, one request per task
        single = ls.create_project("bench push single", load_config("clip"))["id"]
        few = clip_tasks(b, "s")
        _, single_s = timed(lambda: push_level(ls, single, "clip", few, one, "bench"))
        few_changed = [t if i % 10 else redrafted(t, f"changed draft {i}") for i, t in enumerate(few)]
        _, single_repush_s = timed(lambda: push_level(ls, single, "clip", few_changed, one, "bench"))

        # pull: N annotated tasks in the workspace's project, read by a child process
        project = ls.create_project(st.project_title(ws, "clip"), load_config("clip"))["id"]
        for i in range(0, n, args.batch_size):
            ls.import_tasks(project, [annotated(t, i + j) for j, t in enumerate(tasks[i:i + args.batch_size])])
        out = subprocess.run([sys.executable, "-c", PULL_CHILD, url, creds["token"], str(root), str(ws.root)],
                             capture_output=True, text=True, check=True)
        pulled = json.loads(out.stdout.strip().splitlines()[-1])
        assert pulled["new_or_changed"]["clip"] == n, pulled
        ids = [t["id"] for t, _ in zip(ls.iter_tasks(project, page_size=b), range(b))]
        _, get_s = timed(lambda: [ls.sdk.tasks.get(str(task_id)) for task_id in ids])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    rows = [("push, new tasks", n, push_s, b, single_s), ("re-push, a tenth of the drafts changed", n, repush_s, b,
                                                          single_repush_s),
            ("pull (export snapshot, every annotation stored, merge)", n, pulled["seconds"], b, get_s)]
    lines = [
        f"## Review at {n:,} tasks (Label Studio 1.23.2, local SQLite, this 2-core machine)", "",
        f"`benchmarks/bench_review.py --tasks {n} --baseline {b}`: clip tasks with a caption prediction, bulk requests "
        f"of {args.batch_size}. The per-task path is the same code with one task per request (one import, one "
        f"prediction, one GET per task) on {b} tasks against the same server. Peak memory of the pull: "
        f"{pulled['peak_rss_mb']:.0f} MB (its own process).", "",
        "| step | tasks | seconds | s per 1,000 tasks | per-task path, s per 1,000 | bulk vs per-task |",
        "|---|---|---|---|---|---|"]
    for name, count, seconds, base_n, base_s in rows:
        lines.append(f"| {name} | {count:,} | {seconds:.1f} | {per_1000(seconds, count)} | {per_1000(base_s, base_n)} "
                     f"| **{(base_s / base_n) / (seconds / count):.1f}x** |")
    write_section("review", "\n".join(lines))
    print("\n".join(lines))
    print(json.dumps({"peak_rss_mb": pulled["peak_rss_mb"], "max_rss_parent_mb":
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
