"""A release of the same workspace by the baseline commit and by HEAD (or the working tree), side by side.

    .venv/bin/python benchmarks/bench_release.py --sizes 1000,4000 --head worktree --out /tmp/release.md

What is timed: `hivau.tasks.release.publish.build_release(ws, ReleaseSettings(include_unreviewed=True))`, the first
release of a workspace whose manifests that same version wrote (`hivau.tasks.manifests.write_manifests(ws)`, not
timed). The baseline is 02b78f7 (before the verifiable tasks `vau/`, `vau_r1/` and their SFT / GRPO exports); HEAD
is a commit (`--head REV`, default HEAD) or the working tree (`--head worktree`: tracked and untracked, not ignored
files, `git ls-files -co --exclude-standard`, so uncommitted exports are measured too).

Each version is exported (`git archive REV | tar -x -C DIR`, or the working tree's files copied into DIR), laid out
as the installed package in DIR/pkg (`report.lay_out_as_installed`: pyproject's package-dir of that version) and run
with `PYTHONPATH=DIR/pkg` in a fresh child process from a neutral folder; the child checks that `hivau.__file__` is
under DIR.

The input, the same for both versions: N finished videos built by the baseline snapshot's own
`benchmarks/bench_manifests.py` (`make_item`, `make_reviews`): probe, 2 events x 3 clips, a caption per clip, event
and video summaries with judgement / description / analysis, 7 QA pairs per event and video, motion phrases, about
70% anomalous (UCF-Crime classes) and 30% normal, stored clip reviews on 5% of the videos, one batch record; and a
placeholder media file (a few bytes) at every path the records name (clips, events, the video), since a release
hard-links the media of every released item. One generator (seed 0) makes the largest size; a smaller size is its
first N videos. HEAD's code then adds a reasoning chain to every event and video (its text from the record's
captions, description and analysis, shaped like the offline roll-up's), which HEAD releases as `reasoning` rows and
inside the SFT rows' `<think>`; the baseline reads the same records without them. Each version gets its own copy of
the store and writes its manifests into it.

Per (version, size), `--repeats` runs alternating versions, each the workspace's first release (the previous run's
release folder is removed): the call's wall time, the child's peak RSS (ru_maxrss, imports and the read of the
manifests included), the release folder's size on disk without `media/` (hard links to the workspace's files), its
number of files (all, and without media), its instruction rows and verifiable tasks. Medians are reported, with the
ratio HEAD / baseline and whether the time is within 1.5x. `--profile` (or a time ratio above 1.5 at the largest
size) adds one cProfile run of each version at the largest size (not counted), top 15 by cumulative time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import lay_out_as_installed, measured_call
from report import run_child as report_run_child  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "release.json"
BASELINE = "02b78f7"
LIMIT = 1.5  # the issue: the release stays within 1.5x of today's time
REVIEWED_EVERY = 20  # one video in 20 (5%) has stored clip reviews, as in bench_manifests.py
SEED = 0


# ---------------------------------------------------------------- the two versions, laid out as installed


def git(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, **kw)


def export_version(rev: str, dest: Path) -> str:
    """`git archive rev | tar -x -C dest` (or the working tree's files for rev == 'worktree'), laid out as installed
    in dest/pkg;
    returns what was exported (a short commit, or 'worktree@<HEAD> +N changed')."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    if rev == "worktree":
        head = git("rev-parse", "--short", "HEAD", text=True).stdout.strip()
        files = git("ls-files", "-co", "--exclude-standard", "-z").stdout.decode().split("\0")
        for rel in filter(None, files):
            src = REPO / rel
            if src.is_file():  # a tracked file deleted in the working tree is listed too
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
        changed = [line for line in git("status", "--porcelain", text=True).stdout.splitlines() if line.strip()]
        label = f"worktree@{head} (+{len(changed)} uncommitted: {', '.join(c[3:] for c in changed)})"
    else:
        label = git("rev-parse", "--short", rev, text=True).stdout.strip()
        subprocess.run(f"git -C {REPO} archive {label} | tar -x -C {dest}", shell=True, check=True)
    lay_out_as_installed(dest, dest / "pkg")
    if not (dest / "pkg" / "hivau" / "tasks" / "release" / "publish.py").is_file():
        raise RuntimeError(f"{dest}: no hivau/tasks/release/publish.py in its package layout")
    return label


def run_child(snap: Path, spec: dict) -> dict:
    """This file, run as a child with one version on its path, from a neutral folder; its last output line."""
    return report_run_child(Path(__file__).resolve(), snap / "pkg", {**spec, "snap": str(snap)})


# ---------------------------------------------------------------- children


def check_origin(snap: str) -> str:
    import hivau

    where = Path(hivau.__file__).resolve()
    if not where.is_relative_to(Path(snap).resolve()):
        raise RuntimeError(f"hivau imported from {where}, not from {snap}")
    return str(where)


def touch(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def child_store(spec: dict) -> dict:
    """The stores of every size from one generator: videos, reviews, a batch record, placeholder media."""
    check_origin(spec["snap"])
    sys.path.insert(0, str(Path(spec["snap"]) / "benchmarks"))  # the snapshot's own builder
    from bench_manifests import make_item, make_reviews

    from hivau.schemas.item import BatchRecord
    from hivau.workspace import Workspace

    sizes = sorted(spec["sizes"])
    stores = {n: Workspace.at(Path(spec["root"]) / f"store-{n}") for n in sizes}
    rng = random.Random(SEED)
    started, next_id, reviews = time.perf_counter(), 1000, {n: 0 for n in sizes}
    anomalous = {n: 0 for n in sizes}
    for i in range(sizes[-1]):
        item = make_item(i, rng)
        review = make_reviews(item, next_id, rng) if i % REVIEWED_EVERY == 0 else []
        next_id += 100 if review else 0
        for n, ws in stores.items():
            if i >= n:
                continue
            ws.put_video(item)
            for r in review:
                ws.put_review(r)
            reviews[n] += len(review)
            anomalous[n] += item.is_anomaly
            for seg in (*item.planned_clips, *item.planned_events):
                touch(ws.root / seg.media_path, seg.clip_id if hasattr(seg, "clip_id") else seg.event_id)
            touch(ws.video_media(item.video_id), item.video_id)
    for n, ws in stores.items():
        ws.put_batch(BatchRecord(batch_id="b0", format="hivau", annotations="/data/annotations.json",
                                 videos_dir="/data/videos", created_at="2026-11-30T09:00:00",
                                 built_at="2026-11-30T09:30:00", n_entries=n,
                                 video_ids=[f"v{i:05d}" for i in range(n)]))
    return {str(n): {"videos": n, "anomalous": anomalous[n], "reviews": reviews[n],
                     "media_files": sum(1 for p in (stores[n].root / "media").rglob("*") if p.is_file())}
            for n in sizes} | {"seconds": round(time.perf_counter() - started, 1)}


def chain_of(item, item_id: str, level: str, start_s: float, end_s: float, clips, captions: dict):
    """A reasoning chain of one event or the video, shaped like the offline roll-up's (the store gives its texts)."""
    from hivau.schemas.chains import Chain, format_chain
    from hivau.schemas.records import Generator, ReasoningChain

    summary = next((s for s in item.summaries if s.item_id == item_id), None)
    timed = [(c.start_s, c.end_s, captions[c.clip_id]) for c in clips if c.clip_id in captions]
    label = ", ".join(item.labels) if item.is_anomaly else ""
    chain = Chain(scene=timed[0][2] if timed else "A street.", observations=timed,
                  what_happens=(summary.description if summary else "") or "People walk by.",
                  why=(summary.analysis if summary and summary.analysis else "Only ordinary activity is described."),
                  cause=f"What leads up to it, as recorded: {timed[0][2]}" if label and timed else "",
                  consequence=f"What follows, as recorded: {timed[-1][2]}" if label and timed else "",
                  conclusion=f"An anomaly occurs: {label}, from {start_s:.1f} s to {end_s:.1f} s." if label
                  else f"This {level} is normal; no anomaly occurs.")
    return ReasoningChain(item_id=item_id, level=level, video_id=item.video_id, text=format_chain(chain),
                          provenance="auto_draft", generator=Generator(backend="extractive", prompt_version="bench"))


def child_chains(spec: dict) -> dict:
    """A reasoning chain for every event and video of the stores (HEAD's schema; the baseline's ignores them)."""
    check_origin(spec["snap"])
    from hivau.workspace import Workspace

    started, added = time.perf_counter(), 0
    for n in spec["sizes"]:
        ws = Workspace.at(Path(spec["root"]) / f"store-{n}")
        for item in list(ws.iter_videos()):
            captions = {c.item_id: c.text for c in item.captions}
            item.chains = [chain_of(item, e.event_id, "event", e.start_s, e.end_s,
                                    [c for c in item.planned_clips if c.event_id == e.event_id], captions)
                           for e in item.planned_events]
            item.chains.append(chain_of(item, item.video_id, "video", 0.0, item.probe.duration_s, item.planned_clips,
                                        captions))
            ws.put_video(item)
            added += len(item.chains)
    return {"chains": added, "seconds": round(time.perf_counter() - started, 1)}


def child_manifests(spec: dict) -> dict:
    check_origin(spec["snap"])
    from hivau.tasks.manifests import write_manifests
    from hivau.workspace import Workspace

    started = time.perf_counter()
    write_manifests(Workspace.at(spec["ws"]))
    return {"seconds": round(time.perf_counter() - started, 1)}


def folder_figures(release: Path) -> dict:
    """Size on disk (allocated blocks) and apparent bytes without media/, files with and without, per folder."""
    out = {"bytes": 0, "disk_bytes": 0, "files": 0, "files_no_media": 0, "media_files": 0, "by_folder": {}}
    for p in release.rglob("*"):
        if not p.is_file():
            continue
        out["files"] += 1
        top = p.relative_to(release).parts[0] if len(p.relative_to(release).parts) > 1 else "(top)"
        if top == "media":
            out["media_files"] += 1
            continue
        st = p.stat()
        out["files_no_media"] += 1
        out["bytes"] += st.st_size
        out["disk_bytes"] += st.st_blocks * 512
        out["by_folder"][top] = out["by_folder"].get(top, 0) + st.st_size
    return out


def child_release(spec: dict) -> dict:
    where = check_origin(spec["snap"])
    from hivau.tasks.release.publish import ReleaseSettings, build_release
    from hivau.workspace import Workspace

    ws = Workspace.at(spec["ws"])
    release, figures = measured_call(lambda: build_release(ws, ReleaseSettings(include_unreviewed=True)),
                                     spec.get("profile"))
    counts = json.loads((release / "manifest.json").read_text())["counts"]
    return {**figures, "hivau": where, "release": release.name, "rows": counts["rows"],
            "vau_tasks": sum(counts.get("vau_tasks", {}).values()), "rows_by_split": counts["rows_by_split"],
            **folder_figures(release)}


# ---------------------------------------------------------------- the parent


def machine() -> dict:
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            **{name: version(name) for name in ("pydantic", "pyarrow")}}


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def measure(snaps: dict, wss: dict, repeats: int, profile_dir: Path | None, n: int) -> dict:
    """`repeats` runs of each version, alternating (and one profiled run of each with profile_dir, not counted)."""
    runs: dict[str, list] = {v: [] for v in snaps}
    for rep in range(repeats + (1 if profile_dir else 0)):
        profiling = rep == repeats
        for version, snap in snaps.items():
            shutil.rmtree(wss[version] / "releases", ignore_errors=True)
            spec = {"op": "release", "ws": str(wss[version])}
            if profiling:
                spec["profile"] = str(profile_dir / f"profile-release-{version}-n{n}.txt")
            result = run_child(snap, spec)
            result["load"] = load()
            print(f"  {n} {version:8s} run {rep + 1}: {result['wall_s']:.2f} s, peak {result['peak_mb']:.0f} MB, "
                  f"{result['bytes'] / 2**20:.1f} MB in {result['files_no_media']} files (+{result['media_files']} "
                  f"media), {result['rows']} rows, {result['vau_tasks']} tasks, load {result['load']}"
                  + (" (profiled, not counted)" if profiling else ""), flush=True)
            if not profiling:
                runs[version].append(result)
    for ws in wss.values():
        shutil.rmtree(ws / "releases", ignore_errors=True)
    if not repeats:
        return {}
    out = {}
    for v, rs in runs.items():
        last = rs[-1]
        out[v] = {"wall_s": statistics.median(r["wall_s"] for r in rs),
                  "peak_mb": statistics.median(r["peak_mb"] for r in rs),
                  "rss_before_call_mb": statistics.median(r["rss_before_call_mb"] for r in rs),
                  "runs_s": [round(r["wall_s"], 3) for r in rs], "loads": [r["load"] for r in rs],
                  **{k: last[k] for k in ("bytes", "disk_bytes", "files", "files_no_media", "media_files", "rows",
                                          "vau_tasks", "rows_by_split", "by_folder", "hivau")}}
    out["ratio_s"] = out["head"]["wall_s"] / out["baseline"]["wall_s"]
    out["ratio_bytes"] = out["head"]["bytes"] / out["baseline"]["bytes"]
    out["ratio_mb"] = out["head"]["peak_mb"] / out["baseline"]["peak_mb"]
    out["within_limit"] = out["ratio_s"] <= LIMIT
    return out


def report(stored: dict) -> str:
    m = stored["machine"]
    lines = [f"Baseline `{stored['baseline']}` against HEAD `{stored['head']}`; "
             f"median of {stored['repeats']} runs per version, alternating, each a fresh process. "
             f"Machine: {m['cpus']} CPU cores ({m['cpu']}), Python {m['python']}, pydantic {m['pydantic']}, "
             f"pyarrow {m['pyarrow']}; load average (1/5/15 min) {stored['load_start']} at the start, "
             f"{stored['load_end']} at the end (other work was running).", "",
             "| videos | rows | tasks (HEAD) | baseline s | HEAD s | time ratio | within 1.5x | baseline MB | HEAD MB "
             "| size ratio | files (baseline / HEAD) | baseline peak MB | HEAD peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in sorted(stored["sizes"], key=int):
        r = stored["sizes"][n]["release"]
        b, h = r["baseline"], r["head"]
        rows = f"{h['rows']:,}" if h["rows"] == b["rows"] else f"{b['rows']:,} / {h['rows']:,}"
        lines.append(f"| {int(n):,} | {rows} | {h['vau_tasks']:,} | {b['wall_s']:.2f} | {h['wall_s']:.2f} | "
                     f"{r['ratio_s']:.2f}x | {'yes' if r['within_limit'] else '**no**'} | {b['bytes'] / 2**20:.1f} | "
                     f"{h['bytes'] / 2**20:.1f} | {r['ratio_bytes']:.2f}x | {b['files_no_media']} / "
                     f"{h['files_no_media']} | {b['peak_mb']:.0f} | {h['peak_mb']:.0f} |")
    top = str(max(stored["sizes"], key=int))
    r = stored["sizes"][top]["release"]
    folders = sorted(set(r["baseline"]["by_folder"]) | set(r["head"]["by_folder"]))
    lines += ["", f"Release folder without media at {int(top):,} videos, MB per folder (baseline / HEAD): "
              + ", ".join(f"`{f}` {r['baseline']['by_folder'].get(f, 0) / 2**20:.2f} / "
                          f"{r['head']['by_folder'].get(f, 0) / 2**20:.2f}" for f in folders) + ".",
              "", "Rows are instruction rows (`data/`), tasks the verifiable tasks (`vau/`); MB is the apparent size "
              "of the release's files outside `media/` (hard links to the workspace's media, "
              f"{r['head']['media_files']:,} at {int(top):,} videos); files likewise without media. Peak is the "
              "child's ru_maxrss (imports and the manifests' read included). Raw figures: "
              "`benchmarks/results/release.json`."]
    profile = stored["sizes"][top].get("profile", {})
    for v in ("head", "baseline"):
        if v in profile:
            lines += ["", f"cProfile of one {v} release at {int(top):,} videos (not counted above), top 15 cumulative:",
                      "", "```", profile[v].strip(), "```"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,4000", help="comma-separated numbers of videos")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repeats-at", default="", help="fewer runs at some sizes, e.g. 4000:2")
    parser.add_argument("--head", default="HEAD", help="a commit, or 'worktree' for uncommitted changes")
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--work", type=Path, default=None, help="keeps the stores between invocations")
    parser.add_argument("--profile", action="store_true", help="one cProfile run of each at the largest size")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        fn = {"store": child_store, "chains": child_chains, "manifests": child_manifests,
              "release": child_release}[spec["op"]]
        print(json.dumps(fn(spec)))
        return
    started, load_start = time.perf_counter(), load()
    print(f"load average {load_start}", flush=True)
    root = args.work or Path(tempfile.mkdtemp(prefix="hivau-release-"))
    root.mkdir(parents=True, exist_ok=True)
    labels = {v: export_version(rev, root / f"snap-{v}") for v, rev in (("baseline", args.baseline),
                                                                        ("head", args.head))}
    snaps = {v: root / f"snap-{v}" for v in labels}
    print(f"exported {labels}", flush=True)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    repeats_at = {int(k): int(v) for k, v in (p.split(":") for p in args.repeats_at.split(",") if p)}
    marker = root / "stores.json"
    made = json.loads(marker.read_text()) if marker.is_file() else {}
    if not all(str(n) in made for n in sizes) or "chains" not in made:  # built once, kept with --work
        for n in sizes:
            shutil.rmtree(root / f"store-{n}", ignore_errors=True)
        made = run_child(snaps["baseline"], {"op": "store", "sizes": sizes, "root": str(root)})
        # HEAD adds a reasoning chain to every event and video (released as reasoning rows and in the SFT rows'
        # <think>); the baseline, which has no chains, reads the same records without them
        made["chains"] = run_child(snaps["head"], {"op": "chains", "sizes": sizes, "root": str(root)})
        marker.write_text(json.dumps(made))
    print(f"stores: {made}", flush=True)
    stored = {"machine": machine(), "baseline": labels["baseline"], "head": labels["head"], "load_start": load_start,
              "repeats": args.repeats, "sizes": {}}
    for n in sizes:
        wss, prep = {}, {}
        for v in ("baseline", "head"):
            (root / f"profile-release-{v}-n{n}.txt").unlink(missing_ok=True)
        for version, snap in snaps.items():  # each version's own copy, manifests it wrote itself
            wss[version] = root / f"ws-{version}-{n}"
            shutil.rmtree(wss[version], ignore_errors=True)
            shutil.copytree(root / f"store-{n}", wss[version], symlinks=True)
            prep[version] = run_child(snap, {"op": "manifests", "ws": str(wss[version])})
        print(f"{n} videos: manifests written {prep}", flush=True)
        last = n == sizes[-1]
        repeats = repeats_at.get(n, args.repeats)
        row = {"input": made[str(n)], "manifests_s": prep, "repeats": repeats,
               "release": measure(snaps, wss, repeats, root if (args.profile and last) else None, n)}
        r = row["release"]
        if last and not args.profile and r["ratio_s"] > LIMIT:  # slower than the issue allows: where the time goes
            print(f"  ratio {r['ratio_s']:.2f}x > {LIMIT}x: profiling", flush=True)
            measure(snaps, wss, 0, root, n)
        for v in ("baseline", "head"):
            prof = root / f"profile-release-{v}-n{n}.txt"
            if prof.is_file():
                row.setdefault("profile", {})[v] = prof.read_text()
        stored["sizes"][str(n)] = row
        print(json.dumps({"ratio_s": round(r["ratio_s"], 3), "ratio_bytes": round(r["ratio_bytes"], 3),
                          "within": r["within_limit"]}), flush=True)
        for v in wss.values():
            shutil.rmtree(v, ignore_errors=True)
    stored["load_end"] = load()
    stored["seconds"] = round(time.perf_counter() - started)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(stored, indent=1))
    text = report(stored)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    print(f"done in {stored['seconds']} s; work folder {root}", flush=True)


if __name__ == "__main__":
    main()
