"""Writing the manifests and reading a release's rows: the baseline commit against HEAD, side by side.

    .venv/bin/python benchmarks/bench_manifests.py --sizes 1000,4000

Both versions are exported from git (`git archive`) and laid out as the installed package (pyproject.toml's
package-dir of each commit), so each runs from its own copy in a fresh process (PYTHONPATH, run from a neutral
folder; the child checks where `hivau` came from). Input, the same for both, built once per size with HEAD's
record types: a store of N finished videos (probe, 2 events x 3 clips, a caption per clip, event and video
summaries with judgement / description / analysis, 7 QA pairs per event and video, motion phrases extracted with
spaCy), one batch record, stored reviews with edited and accepted captions on 5% of the videos, and a release
folder with `data/train.parquet` of 25 rows per video.

Paths timed:
- manifests: baseline `hivau.tasks.merge.merge_workspace(ws)` against HEAD `hivau.tasks.manifests.write_manifests(ws)`,
  each on a fresh copy of the store (no manifests yet);
- release rows: baseline `hivau.models.data.read_rows(release, "train")` (pandas) against HEAD
  `hivau.schemas.records.read_release_rows(release, "train", by_id=True)` (pyarrow, every row validated).

Each (version, path) runs `--repeats` times, versions alternating; the medians of the call's wall time and of the
child's peak RSS (ru_maxrss, imports included) are reported. `--profile` adds one cProfile run of each.
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
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import lay_out_as_installed, measured_call, write_section
from report import run_child as report_run_child  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "manifests.json"
BASELINE = "d73c279"
PATHS = ("manifests", "rewrite", "release")  # rewrite: a second write of the same store (no new reviews)
ROWS_PER_VIDEO = 25
REVIEWED_EVERY = 20  # one video in 20 (5%) has stored reviews

# ---------------------------------------------------------------- the two versions, laid out as installed


def export_version(rev: str, dest: Path) -> tuple[Path, str]:
    """`git archive rev` into dest/src, then dest/pkg/hivau/... per that commit's setuptools package-dir; kept in
    `--work` for the same commit. Returns the package folder and the commit exported."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev], check=True, capture_output=True,
                            text=True).stdout.strip()
    src, pkg, stamp = dest / "src", dest / "pkg", dest / "commit.txt"
    if (pkg / "hivau" / "__init__.py").is_file() and stamp.is_file() and stamp.read_text() == commit:
        return pkg, commit
    shutil.rmtree(dest, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit], check=True,
                             capture_output=True).stdout
    archive_path = dest / "src.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(src, filter="data")
    archive_path.unlink()
    lay_out_as_installed(src, pkg)
    stamp.write_text(commit)
    return pkg, commit


def run_child(pkg: Path, spec: dict) -> dict:
    """This file, run as a child with one version on its path, from a neutral folder; its last output line."""
    return report_run_child(Path(__file__).resolve(), pkg, {**spec, "pkg": str(pkg)})


# ---------------------------------------------------------------- the synthetic input (child, HEAD's records)

SUBJECTS = ["a man in a red shirt", "a woman with a backpack", "two teenagers", "a man in a black hoodie",
            "an old man with a cane", "a security guard"]
ACTIONS = ["breaks the shop window", "grabs a bag from the counter", "pushes another man to the ground",
           "runs out of the store", "throws a bottle at the car", "climbs over the fence", "hits the cashier",
           "kicks the door open", "pours liquid on the floor", "drives a car into the gate",
           "hides a phone in his jacket", "walks past the parked car"]
PLACES = ["near the entrance", "in the parking lot", "beside the counter", "on the sidewalk", "at the crossroad",
          "inside the corridor", "next to the gas pump", "under the street light"]
LABELS = ["Robbery", "Fighting", "Arson", "Shoplifting", "Assault", "RoadAccidents", "Burglary"]
ANALYSES = ["Taking goods by force is a crime against the shop and its staff.",
            "Physical violence between people endangers their safety.",
            "Damaging property on purpose is vandalism and may start a fire.",
            "A collision at speed can injure people nearby."]
QUESTIONS = {"what": "What happens in the video?", "who": "Who is involved in the event?",
             "where": "Where does the event take place?", "when": "When does the anomaly start?",
             "how": "How does the person act?", "how_much": "How many people are involved?",
             "why": "Why is this event anomalous?"}
PROMPTS = {"caption": "Describe the main subjects and their actions in the video.",
           "judgement": "Is there any anomaly in the video? Answer and name it.",
           "description": "Describe the anomalous event in the video in detail.",
           "analysis": "Analyse why the event in the video is anomalous and what its consequences could be."}


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(ACTIONS)} {rng.choice(PLACES)}."


def make_item(i: int, rng: random.Random):
    """One finished video record: probe, 2 events x 3 clips, captions, summaries, 5W2H pairs, motion phrases."""
    from hivau.schemas.item import AnnotatedClip, AnnotatedEvent, SummarySplit, VideoItem
    from hivau.schemas.records import HUMAN, Caption, Clip, Event, Generator, QAPair, SourceVideo, Summary
    from hivau.tasks.text.contracts import QA_TYPES
    from hivau.tasks.text.motion import motion_records

    vid = f"v{i:05d}"
    anomalous = rng.random() < 0.7
    labels = [rng.choice(LABELS)] if anomalous else ["Normal"]
    qa_gen = Generator(backend="extractive", model="spacy/en_core_web_sm-3.8.0", prompt_version="qa_5w2h@1")
    probe = SourceVideo(video_id=vid, path=f"/data/videos/{vid}.mp4", source_format="hivau", labels=labels,
                        is_anomaly=anomalous, size_bytes=18_000_000 + i, mtime_ns=1_700_000_000_000_000_000 + i,
                        duration_s=120.0, fps=30.0, r_fps=30.0, n_frames=3600, width=320, height=240, codec="h264",
                        pix_fmt="yuv420p", keyframe_times=[2.0 * k for k in range(60)])
    item = VideoItem(video_id=vid, path=probe.path, source_format="hivau", source=f"annotations.json:{vid}",
                     labels=labels, events=[], declared_fps=30.0, declared_n_frames=3600, probe=probe,
                     status="done", batch="b0")

    def split(texts: list[str]) -> SummarySplit:
        judgement = f"An anomaly exists: {labels[0].lower()}." if anomalous else "No anomaly is present."
        return SummarySplit(judgement=judgement, description=" ".join(texts),
                            analysis=rng.choice(ANALYSES) if anomalous else None)

    def summary(item_id: str, level: str, texts: list[str]) -> Summary:
        s = split(texts)
        return Summary(item_id=item_id, level=level, video_id=vid, text=f"{s.judgement} {s.description}",
                       judgement=s.judgement, description=s.description, analysis=s.analysis, provenance="human",
                       generator=HUMAN)

    def qa(item_id: str, level: str) -> list[QAPair]:
        return [QAPair(item_id=item_id, level=level, video_id=vid, qa_type=t, question=QUESTIONS[t],
                       answer=sentence(rng), provenance="auto_draft", generator=qa_gen) for t in QA_TYPES]

    event_texts = []
    for e in range(2):
        start = 10.0 + 50.0 * e
        event_id = f"{vid}_E{e}"
        seg = dict(video_id=vid, labels=labels, is_anomaly=anomalous, cut_mode="copy")
        item.planned_events.append(Event(event_id=event_id, index=e, start_s=start, end_s=start + 24.0,
                                         cut_start_s=start, cut_end_s=start + 24.0, n_frames=720,
                                         media_path=f"media/events/{event_id}.mp4",
                                         origin="annotation" if anomalous else "normal_sample", **seg))
        captions = []
        for c in range(3):
            clip_id, s = f"{event_id}C{c}", start + 8.0 * c
            item.planned_clips.append(Clip(clip_id=clip_id, event_id=event_id, index=c, start_s=s, end_s=s + 8.0,
                                           cut_start_s=s, cut_end_s=s + 8.0, n_frames=240,
                                           media_path=f"media/clips/{clip_id}.mp4", **seg))
            captions.append(sentence(rng))
            item.captions.append(Caption(item_id=clip_id, level="clip", video_id=vid, text=captions[-1],
                                         provenance="human", generator=HUMAN))
        item.summaries.append(summary(event_id, "event", captions[:2]))
        item.qa += qa(event_id, "event")
        item.events.append(AnnotatedEvent(start_s=start, end_s=start + 24.0, summary=item.summaries[-1].text,
                                          summary_split=split(captions[:2]),
                                          clips=[AnnotatedClip(start_s=start + 8.0 * c, end_s=start + 8.0 * c + 8.0,
                                                               caption=captions[c]) for c in range(3)]))
        event_texts.append(captions[0])
    item.summaries.append(summary(vid, "video", event_texts))
    item.video_summary, item.video_summary_split = item.summaries[-1].text, split(event_texts)
    item.qa += qa(vid, "video")
    item.motion_phrases = motion_records(item)
    return item


def make_reviews(item, next_id: int, rng: random.Random) -> list:
    """Clip reviews of one video: four captions edited (new text, parsed again at the merge), two accepted."""
    from hivau.schemas.records import ReviewedText, ReviewRecord

    out = []
    for k, clip in enumerate(item.planned_clips):
        draft = next(c.text for c in item.captions if c.item_id == clip.clip_id)
        edited = k < 4
        text = f"{draft[:-1]} while {rng.choice(SUBJECTS)} watches {rng.choice(PLACES)}." if edited else draft
        out.append(ReviewRecord(item_id=clip.clip_id, level="clip", video_id=item.video_id, project="clips",
                                task_id=next_id + k, annotation_id=next_id + k, seen_start_s=clip.start_s,
                                seen_end_s=clip.end_s, verdict="accept",
                                texts=[ReviewedText(name="caption", text=text)], completed_by=1,
                                created_at="2026-11-30T10:00:00", updated_at="2026-11-30T10:05:00", lead_time_s=42.0))
    return out


def release_rows(item, rng: random.Random) -> list:
    """25 instruction rows of one video: 6 clip captions, 6 event and 3 video summary rows, 10 QA rows."""
    from hivau.schemas.records import InstructionRow
    from hivau.tasks.text.motion import motion_phrases

    segments = {c.clip_id: c for c in item.planned_clips} | {e.event_id: e for e in item.planned_events}

    def row(item_id, level, task, answer, qa_type=None, phrases=()):
        seg = segments.get(item_id)
        media = seg.media_path if seg else f"media/videos/{item.video_id}.mp4"
        return InstructionRow(id=f"{item_id}-{task}{'-' + qa_type if qa_type else ''}", item_id=item_id,
                              split="train", level=level, task=task, qa_type=qa_type, media_path=media,
                              source_video=item.video_id, start_s=seg.start_s if seg else 0.0,
                              end_s=seg.end_s if seg else item.probe.duration_s, labels=item.labels,
                              is_anomaly=item.is_anomaly, prompt=QUESTIONS[qa_type] if qa_type else PROMPTS[task],
                              answer=answer, provenance="human", generator=item.captions[0].generator,
                              motion_phrases=[p.text for p in motion_phrases(answer)] if phrases else [])

    rows = [row(c.item_id, "clip", "caption", c.text, phrases=True) for c in item.captions]
    for s in item.summaries:
        rows.append(row(s.item_id, s.level, "judgement", s.judgement))
        rows.append(row(s.item_id, s.level, "description", s.description, phrases=True))
        if s.analysis:
            rows.append(row(s.item_id, s.level, "analysis", s.analysis))
    qa = [q for q in item.qa if q.level == "video"] + [q for q in item.qa if q.level == "event"]
    for q in qa[:ROWS_PER_VIDEO - len(rows)]:
        rows.append(row(q.item_id, q.level, "qa", q.answer, qa_type=q.qa_type))
    return rows


def child_store(spec: dict) -> dict:
    """Write the store (videos, batch, reviews) and the release folder for one size."""
    import pyarrow.parquet as pq

    from hivau.schemas.item import BatchRecord
    from hivau.schemas.records import InstructionRow, to_arrow_table
    from hivau.workspace import Workspace, atomic_write_bytes

    n, root = spec["n"], Path(spec["root"])
    rng = random.Random(n)
    ws = Workspace.at(root / "store")
    rows, reviews, next_id = [], 0, 1000
    started = time.perf_counter()
    for i in range(n):
        item = make_item(i, rng)
        # nulls left out: the baseline's records forbid fields HEAD added since (schema 1.4's probe.batch and
        # probe.split), and read an absent optional field as its default
        atomic_write_bytes(ws.video_path(item.video_id), item.model_dump_json(exclude_none=True).encode())
        if i % REVIEWED_EVERY == 0:
            for review in make_reviews(item, next_id, rng):
                ws.put_review(review)
                reviews += 1
            next_id += 100
        rows += release_rows(item, rng)
    ws.put_batch(BatchRecord(batch_id="b0", format="hivau", annotations="/data/annotations.json",
                             videos_dir="/data/videos", created_at="2026-11-30T09:00:00",
                             built_at="2026-11-30T09:30:00", n_entries=n, video_ids=[f"v{i:05d}" for i in range(n)]))
    rng.shuffle(rows)  # a release's order is not its id order: both readers sort
    (root / "release" / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(to_arrow_table(rows, InstructionRow), root / "release" / "data" / "train.parquet")
    store_mb = sum(p.stat().st_size for p in (root / "store").rglob("*") if p.is_file()) / 2**20
    return {"videos": n, "reviews": reviews, "rows": len(rows), "store_mb": round(store_mb, 1),
            "seconds": round(time.perf_counter() - started, 1)}


# ---------------------------------------------------------------- one timed call (child)


def the_call(version: str, path: str, target: Path):
    """Import the version's function (not timed) and return the call to time."""
    if path in ("manifests", "rewrite"):
        from hivau.workspace import Workspace

        if version == "baseline":
            from hivau.tasks.merge import merge_workspace as write
        else:
            from hivau.tasks.manifests import write_manifests as write
        return lambda: write(Workspace.at(target)).summary.videos_processed
    if version == "baseline":
        from hivau.models.data import read_rows

        return lambda: len(read_rows(target, "train"))
    from hivau.schemas.records import read_release_rows

    return lambda: len(read_release_rows(target, "train", by_id=True))


def child_measure(spec: dict) -> dict:

    import hivau

    where = Path(hivau.__file__).resolve()
    if not where.is_relative_to(Path(spec["pkg"]).resolve()):
        raise RuntimeError(f"hivau imported from {where}, not from {spec['pkg']}")
    count, figures = measured_call(the_call(spec["version"], spec["path"], Path(spec["target"])), spec.get("profile"),
                                   top=40)
    out = {**figures, "count": count, "hivau": str(where)}
    if spec["path"] in ("manifests", "rewrite"):  # rows written per table, counted after the peak was read
        import pyarrow.parquet as pq

        out["tables"] = {p.stem: pq.ParquetFile(p).metadata.num_rows
                         for p in sorted((Path(spec["target"]) / "manifests").glob("*.parquet"))}
    return out


# ---------------------------------------------------------------- the parent: runs, medians, the report


def measure(pkgs: dict, base: Path, path: str, repeats: int, profile_dir: Path | None) -> dict:
    """`repeats` runs of each version, alternating; medians, every run, and what each wrote or read."""
    runs: dict[str, list] = {v: [] for v in pkgs}
    checks: dict[str, dict] = {}
    for rep in range(repeats + (1 if profile_dir else 0)):
        profiling = rep == repeats
        for version, pkg in pkgs.items():
            target = base / "release"
            if path != "release":  # a fresh copy of the store: no manifests yet, nothing left by the other version
                target = base / f"run-{version}"
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(base / "store", target, symlinks=True)
            if path == "rewrite":  # the first write, not timed: what a re-build or a pull with nothing new repeats
                run_child(pkg, {"op": "measure", "version": version, "path": "manifests", "target": str(target)})
            spec = {"op": "measure", "version": version, "path": path, "target": str(target)}
            if profiling:
                spec["profile"] = str(profile_dir / f"profile-{path}-{version}-n{base.name[1:]}.txt")
            result = run_child(pkg, spec)
            if path != "release":
                shutil.rmtree(target)
            print(f"  {path:9s} {version:8s} run {rep + 1}: {result['wall_s']:.2f} s, peak {result['peak_mb']:.0f} MB"
                  + (" (profiled, not counted)" if profiling else ""), flush=True)
            if profiling:
                continue
            runs[version].append(result)
            checks[version] = {"count": result["count"], **({"tables": result["tables"]} if "tables" in result else {})}
    out = {v: {"wall_s": statistics.median(r["wall_s"] for r in rs), "peak_mb": statistics.median(r["peak_mb"] for r in rs),
               "rss_before_call_mb": statistics.median(r["rss_before_call_mb"] for r in rs),
               "runs_s": [round(r["wall_s"], 3) for r in rs]} for v, rs in runs.items()}
    out["ratio_s"] = out["head"]["wall_s"] / out["baseline"]["wall_s"]
    out["ratio_mb"] = out["head"]["peak_mb"] / out["baseline"]["peak_mb"]
    out["output"] = checks
    return out


def machine() -> dict:
    """Without importing the libraries: on Linux a child's ru_maxrss starts from its parent's peak, so the parent
    stays small."""
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            **{name: version(name) for name in ("pydantic", "pyarrow", "pandas", "spacy")}}


def store_size(stored: dict, n: int, row: dict) -> dict:
    """Add one size's figures to the stored results (other sizes, from earlier runs, are kept)."""
    stored.setdefault("sizes", {})[str(n)] = row
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(stored, indent=1))
    return stored


def write_report(stored: dict) -> None:
    m = stored["machine"]
    lines = ["## Manifests and release rows, baseline against HEAD (`benchmarks/bench_manifests.py`)", "",
             f"Baseline `{stored.get('baseline', BASELINE)}` against HEAD `{stored['head']}`, each exported with "
             "`git archive` and run from its own copy in a fresh process, on the same synthetic input: N finished videos in the "
             "store (2 events x 3 clips, captions, event and video summaries, 7 QA pairs per event and video, "
             "motion phrases), 5% of them with stored clip reviews (4 edited captions, 2 accepted), and a release "
             f"of {ROWS_PER_VIDEO} rows per video. `manifests`: baseline `merge_workspace(ws)` against HEAD "
             "`write_manifests(ws)` (which also derives the motion-phrase manifest from the merged texts: edited "
             "captions are parsed with spaCy once, and their phrases kept in the workspace for later writes), on a "
             "fresh copy of the store, and a second write of that copy in a new process; `release rows`: baseline "
             "`read_rows(release, 'train')` (pandas) against HEAD `read_release_rows(release, 'train', by_id=True)` "
             f"(pyarrow, every row validated by pydantic). Median of {stored['repeats']} runs per version, "
             f"alternating; time is the call's wall time, peak is the child process's ru_maxrss (imports included). "
             f"Machine: {m['cpus']} CPU cores ({m['cpu']}), Python {m['python']}, pydantic {m['pydantic']}, "
             f"pyarrow {m['pyarrow']}, pandas {m['pandas']}, spaCy {m.get('spacy', '?')}.", "",
             "| videos | path | baseline s | HEAD s | ratio | baseline peak MB | HEAD peak MB | ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for n in sorted(stored["sizes"], key=int):
        size = stored["sizes"][n]
        for path in PATHS:
            if path not in size:  # results of an older version of this script
                continue
            r = size[path]
            name = {"manifests": "write manifests", "rewrite": "write them again, no new reviews"}.get(
                path, f"release rows ({size['input']['rows']:,})")
            lines.append(f"| {int(n):,} | {name} | {r['baseline']['wall_s']:.2f} | {r['head']['wall_s']:.2f} | "
                         f"{r['ratio_s']:.2f}x | {r['baseline']['peak_mb']:.0f} | {r['head']['peak_mb']:.0f} | "
                         f"{r['ratio_mb']:.2f}x |")
    lines += ["", "Ratios are HEAD / baseline. Raw figures (every run, RSS before the call, rows written per "
              "table): `benchmarks/results/manifests.json`."]
    if stored.get("notes"):
        lines += ["", stored["notes"]]
    write_section("manifests", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="4000", help="comma-separated numbers of videos, e.g. 1000,4000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--head", default="HEAD", help="the commit measured against the baseline")
    parser.add_argument("--work", type=Path, default=None, help="keeps the exports and stores between runs")
    parser.add_argument("--profile", action="store_true", help="one more cProfile run of each, saved under --work")
    parser.add_argument("--report-only", action="store_true", help="rewrite the BENCHMARKS.md table from the results")
    parser.add_argument("--note", help="a paragraph under the table (findings), kept in the results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        result = child_store(spec) if spec["op"] == "store" else child_measure(spec)
        print(json.dumps(result))
        return
    if args.report_only:
        stored = json.loads(RESULTS.read_text())
        if args.note is not None:
            stored["notes"] = args.note
            RESULTS.write_text(json.dumps(stored, indent=1))
        write_report(stored)
        return
    started = time.perf_counter()
    root = args.work or Path(tempfile.mkdtemp(prefix="hivau-manifests-"))
    exported = {v: export_version(rev, root / v) for v, rev in {"baseline": BASELINE, "head": args.head}.items()}
    pkgs = {v: pkg for v, (pkg, _) in exported.items()}
    stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    stored.update(machine=machine(), baseline=exported["baseline"][1], head=exported["head"][1], repeats=args.repeats)
    for n in [int(s) for s in args.sizes.split(",")]:
        base = root / f"n{n}"
        marker = base / "input.json"
        if not marker.is_file():  # the input is built once per size and kept with --work
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir(parents=True)
            marker.write_text(json.dumps(run_child(pkgs["head"], {"op": "store", "n": n, "root": str(base)})))
        made = json.loads(marker.read_text())
        print(f"{n} videos: {made}", flush=True)
        row = {"input": made}
        for path in PATHS:
            row[path] = measure(pkgs, base, path, args.repeats, root if args.profile else None)
        print(json.dumps({p: {"ratio_s": round(row[p]["ratio_s"], 3), "ratio_mb": round(row[p]["ratio_mb"], 3)}
                          for p in PATHS}), flush=True)
        write_report(store_size(stored, n, row))
    print(f"done in {time.perf_counter() - started:.0f} s; work folder {root}", flush=True)


if __name__ == "__main__":
    main()
