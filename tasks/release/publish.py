"""Versioned, immutable releases: parquet instruction sets per split, HIVAU-70k JSONL, LLaMA-Factory and
ms-swift rows, manifest and card.

A release is built in a hidden folder and renamed into `releases/vNNNN` in one step; an existing release
is never written again (its files are made read-only, and a name that exists is refused).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Optional

from prefect.events import emit_event
from pydantic import BaseModel, Field

from hivau.prompts.questions import TEMPLATES
from hivau.schemas.item import Tables
from hivau.schemas.records import (
    DRAFT,
    REVIEWED,
    SCHEMA_VERSION,
    VAU_R1_COLUMNS,
    InstructionRow,
    Split,
    VauTaskRow,
    to_arrow_table,
)
from hivau.tasks.release.exports import (
    hivau_media_path,
    hivau_record,
    llamafactory_dataset_info,
    messages_record,
    sft_record,
    swift_grpo_record,
    trl_grpo_record,
    vau_r1_rows,
)
from hivau.tasks.release.vau import vau_tasks
from hivau.tasks.review.audit import audit_markdown, audit_table, check_gate_markdown, check_gate_table
from hivau.tasks.review.media import playable_video
from hivau.workspace import DiskFullError, Workspace, disk_full_guard, is_disk_full

# the fixture's row order: per source video its clips, events, then the video; tasks in HIVAU's order
LEVEL_ORDER = {"clip": 0, "event": 1, "video": 2}
TASK_ORDER = {"caption": 0, "judgement": 1, "description": 2, "analysis": 3, "qa": 4, "reasoning": 5}


# the verifiable tasks' exports: SFT rows for LLaMA-Factory and ms-swift, GRPO rows for ms-swift and TRL
RL_EXPORT_FOLDERS = ("sft/llamafactory", "sft/swift", "grpo/swift", "grpo/trl")
SFT_DATASET_PREFIX = "hivau_vau_sft"  # LLaMA-Factory's dataset names: hivau_vau_sft_train, hivau_vau_sft_test

# the Prefect event a published release emits; the `retrain` deployment's trigger listens for it
RELEASE_EVENT = "hivau.release.published"


class ReleaseError(RuntimeError):
    pass


class ReleaseSettings(BaseModel):
    include_unreviewed: bool = Field(False, description="let unreviewed drafts in, marked auto_draft")
    exclude_flagged: Literal["error", "warn", "none"] = Field(
        "error", description="leave out unreviewed drafts with a failed check at this severity or worse")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="share of source videos held out for test")
    split_seed: str = Field("hivau", description="salt of the per-video split hash; keep it across releases")
    name: Optional[str] = Field(None, description="release name; default: the next vNNNN")
    dataset: str = Field("hivau", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                         description="the dataset folder of HIVAU's media layout, media/{dataset}/clips/{split}/")
    task_seed: int = Field(0, description="seed of the verifiable tasks' distractors and answer positions")


# ---------------------------------------------------------------- pure helpers
def _unit_hash(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16) / 16 ** 15


def split_of(video_id: str, test_fraction: float, seed: str) -> Split:
    """Per-video and stable: a video keeps its split in every later release, whatever else is added."""
    return "test" if _unit_hash(f"{seed}:{video_id}") < test_fraction else "train"


def video_splits(tables: Tables, settings: ReleaseSettings) -> dict[str, Split]:
    """Each source video's split: the one its batch declared, else by the hash of its id."""
    return {v.video_id: v.split or split_of(v.video_id, settings.test_fraction, settings.split_seed)
            for v in tables.videos}


def split_sources(tables: Tables, rows: list[InstructionRow], settings: ReleaseSettings) -> list[dict]:
    """Where each split's videos came from: per split and batch, how the split was chosen and how many of the
    released videos it gave."""
    released, splits = {r.source_video for r in rows}, video_splits(tables, settings)
    count: Counter = Counter()
    for v in tables.videos:
        if v.video_id in released:
            how = "declared" if v.split else f"hash ({settings.test_fraction:.0%} test)"
            count[(splits[v.video_id], v.batch or "-", how)] += 1
    return [{"split": s, "batch": b, "chosen_by": how, "videos": n} for (s, b, how), n in sorted(count.items())]


def pick_template(level: str, task: str, row_id: str) -> str:
    options = TEMPLATES[(level, task)]
    return options[int(_unit_hash(row_id) * len(options))]


def admitted(provenance: str, include_unreviewed: bool) -> bool:
    return provenance in REVIEWED or (include_unreviewed and provenance == DRAFT)


# the texts a release row is made of, as the checks name them (a flag on the whole summary covers its parts)
ROW_TARGETS = {"caption": ("caption",), "judgement": ("summary", "judgement"),
               "description": ("summary", "description"), "analysis": ("summary", "analysis"),
               "reasoning": ("chain:perception", "chain:cognition", "chain:conclusion")}


def flagged_targets(tables: Tables, policy: str) -> dict[tuple[str, str], list[str]]:
    """(item id, target) -> the checks that flagged it at the policy's severity or worse."""
    if policy == "none":
        return {}
    severities = ("error",) if policy == "error" else ("error", "warn")
    out: dict[tuple[str, str], list[str]] = {}
    for c in tables.checks:
        if c.severity in severities:
            out.setdefault((c.item_id, c.target), []).append(c.check)
    return out


def held_by_checks(row: InstructionRow, flagged: dict[tuple[str, str], list[str]]) -> list[str]:
    """The checks that keep an unreviewed draft row out of the release (none for reviewed text)."""
    if row.provenance != DRAFT or not flagged:
        return []
    targets = ("qa", f"qa:{row.qa_type}") if row.task == "qa" else ROW_TARGETS[row.task]
    return [check for t in targets for check in flagged.get((row.item_id, t), [])]


def instruction_rows(tables: Tables, settings: ReleaseSettings, media_of: dict[str, str],
                     held_back: Optional[Counter] = None) -> list[InstructionRow]:
    """One row per instruction from the merged tables, filtered by review state and the draft checks; `media_of`
    maps item ids with media to their path inside the release; rows left out for a failed check are counted in
    `held_back` by check."""
    clips = {c.clip_id: c for c in tables.clips}
    events = {e.event_id: e for e in tables.events}
    videos = {v.video_id: v for v in tables.videos}
    splits = video_splits(tables, settings)

    def span(level: str, item_id: str):
        if level == "clip" and item_id in clips:
            c = clips[item_id]
            return c.start_s, c.end_s, c.labels, c.is_anomaly
        if level == "event" and item_id in events:
            e = events[item_id]
            return e.start_s, e.end_s, e.labels, e.is_anomaly
        if level == "video" and item_id in videos:
            v = videos[item_id]
            return 0.0, v.duration_s, v.labels, v.is_anomaly
        return None

    rows: list[InstructionRow] = []
    phrases: dict[tuple[str, str], list[str]] = {}
    for m in tables.motion_phrases:
        phrases.setdefault((m.item_id, m.source), []).append(m.text)  # caption and description rows take their own

    def add(row_id, item_id, level, task, video_id, prompt, answer, provenance, generator, annotation_id,
            qa_type=None):
        where = span(level, item_id)
        if where is None or item_id not in media_of or not answer or not admitted(provenance, settings.include_unreviewed):
            return
        start, end, labels, anomalous = where
        rows.append(InstructionRow(
            id=row_id, item_id=item_id, split=splits[video_id],
            level=level, task=task, qa_type=qa_type, media_path=media_of[item_id], source_video=video_id,
            start_s=start, end_s=end, labels=labels, is_anomaly=anomalous, prompt=prompt, answer=answer,
            provenance=provenance, generator=generator, annotation_id=annotation_id,
            motion_phrases=phrases.get((item_id, task), [])))

    for c in tables.captions:
        row_id = f"{c.item_id}:caption"
        add(row_id, c.item_id, "clip", "caption", c.video_id, pick_template("clip", "caption", row_id), c.text,
            c.provenance, c.generator, c.annotation_id)
    for s in tables.summaries:
        for task in ("judgement", "description", "analysis"):
            row_id = f"{s.item_id}:{task}"
            add(row_id, s.item_id, s.level, task, s.video_id, pick_template(s.level, task, row_id),
                getattr(s, task), s.provenance, s.generator, s.annotation_id)
    for q in tables.qa:
        add(f"{q.item_id}:qa:{q.qa_type}", q.item_id, q.level, "qa", q.video_id, q.question, q.answer,
            q.provenance, q.generator, q.annotation_id, qa_type=q.qa_type)
    for c in tables.chains:
        row_id = f"{c.item_id}:reasoning"
        add(row_id, c.item_id, c.level, "reasoning", c.video_id, pick_template(c.level, "reasoning", row_id), c.text,
            c.provenance, c.generator, c.annotation_id)
    flagged = flagged_targets(tables, settings.exclude_flagged)
    kept = []
    for row in rows:
        checks = held_by_checks(row, flagged)
        if checks and held_back is not None:
            held_back.update(set(checks))
        if not checks:
            kept.append(row)
    return sorted(kept, key=row_order)


def row_order(row: InstructionRow) -> tuple:
    return (row.source_video, LEVEL_ORDER[row.level], row.item_id, TASK_ORDER[row.task], row.qa_type or "")


_JSON = json.JSONEncoder(ensure_ascii=False)  # one encoder: json.dumps with options builds one per call


def write_jsonl(path: Path, records) -> None:
    with open(path, "w") as fh:
        for record in records:
            fh.write(_JSON.encode(record) + "\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- chart and card
def bar_chart_svg(counts: dict[str, dict[str, int]], title: str) -> str:
    """A grouped horizontal bar chart (class -> level -> items) as standalone SVG; no plotting library."""
    colors = {"clip": "#4c6ef5", "event": "#f76707", "video": "#2b8a3e"}
    classes = sorted(counts)
    top = max([n for per in counts.values() for n in per.values()] or [1])
    bar, gap, left, width = 12, 10, 170, 420
    height = 50 + len(classes) * (3 * bar + gap) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{height}" '
           f'font-family="sans-serif" font-size="12">', f'<text x="10" y="20" font-size="14">{title}</text>']
    y = 40
    for cls in classes:
        out.append(f'<text x="{left - 8}" y="{y + 1.5 * bar + 4}" text-anchor="end">{cls}</text>')
        for level in ("clip", "event", "video"):
            n = counts[cls].get(level, 0)
            w = width * n / top
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{colors[level]}"/>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{y + bar - 3}">{n}</text>')
            y += bar
        y += gap
    for i, level in enumerate(("clip", "event", "video")):
        out.append(f'<rect x="{left + i * 90}" y="{y + 5}" width="10" height="10" fill="{colors[level]}"/>'
                   f'<text x="{left + i * 90 + 14}" y="{y + 14}">{level}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _md_table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def dataset_card(manifest: dict) -> str:
    c = manifest["counts"]
    parts = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        *[f"  - split: {s}\n    path: data/{s}.parquet" for s in ("train", "test")],
        "task_categories:", "- video-text-to-text", "---", "",
        f"# hivau release {manifest['name']}", "",
        f"Hierarchical (clip / event / video) instruction data for video anomaly understanding, built by hivau "
        f"from {c['source_videos']} source videos. It follows release {manifest['previous'] or '(none)'}.", "",
        f"Policy: {'reviewed text and unreviewed drafts (marked `auto_draft`)' if manifest['policy']['include_unreviewed'] else 'only text a person wrote or reviewed (human, accepted, edited)'}; "
        "split by source video: as its batch declared it (`hivau build --split`), else by a hash of its id "
        f"({manifest['policy']['test_fraction']:.0%} held out for test).", "",
        "![items per anomaly class and level](chart.svg)", "",
        "## Rows", "",
        _md_table(("split", "rows", "videos"), [(s, c["rows_by_split"].get(s, 0), c["videos_by_split"].get(s, 0))
                                                for s in ("train", "test")]), "",
        "Where each split's videos came from:", "",
        _md_table(("split", "batch", "chosen by", "videos"),
                  [(x["split"], x["batch"], x["chosen_by"], x["videos"]) for x in manifest.get("split_sources", [])]), "",
        _md_table(("level", "task", "rows"), sorted((*k.split(":"), v) for k, v in c["rows_by_level_task"].items())), "",
        "## How the text got here", "",
        _md_table(("provenance", "rows"), sorted(c["rows_by_provenance"].items())), "",
        "## Generators and prompts", "",
        _md_table(("generator", "rows"), sorted(manifest["generators"].items())), "",
        audit_markdown(manifest.get("audit", []), manifest.get("review_rule")),
        check_gate_markdown(manifest.get("checks", []), manifest.get("held_back_by_check", {}),
                            manifest["policy"].get("exclude_flagged", "none")),
        "## Files", "",
        "- `data/{train,test}.parquet`: one row per instruction (schema `InstructionRow`, "
        f"schema version {manifest['schema_version']}); `datasets.load_dataset('parquet', data_files=...)` reads them.",
        "- `hivau/{train,test}.jsonl`: the same rows in HIVAU-70k's conversation format for HolmesVAU's InternVL "
        "fine-tuning script; `video` is relative to `media/` (the script's `root`), one `id` sequence over both "
        "files, QA rows carry `qa_type`.",
        "- `llamafactory/{train,test}.jsonl` and `llamafactory/dataset_info.json` (datasets `hivau_train`, "
        "`hivau_test`): `messages` + `videos` rows for LLaMA-Factory; pass `dataset_dir` = `llamafactory/` and "
        "`media_dir` = this folder.",
        "- `swift/{train,test}.jsonl`: the same `messages` + `videos` rows for ms-swift; run `swift sft` from this "
        "folder (or set `ROOT_IMAGE_DIR` to it). `hivau export-frames --release . --out DIR [--model MODEL]` writes "
        "both with each video as its list of frames (ATS-selected with a trained hivau model), outside this folder.",
        f"- `media/{manifest['policy']['dataset']}/{{clips,events,videos}}/{{train,test}}/`: the media "
        "the rows refer to, in HIVAU-70k's layout.",
        "- `vau/{train,test}.parquet`: verifiable tasks (`VauTaskRow`): multiple choice (`choice`, four options, "
        "the right letter balanced over A-D), temporal grounding (`grounding`, `[start, end]` in seconds of the "
        "source video, `[-1, -1]` for a normal one), classification (`classify`, a class or Normal) and anomaly "
        f"yes/no (`detect`), drawn with seed {manifest['policy'].get('task_seed', 0)}; counts in `manifest.json` "
        "(`counts.vau_tasks`).",
        "- `vau_r1/{train,test}.csv`: the video-level tasks in VAU-R1's VAU-Bench columns (`Video Name` is the "
        f"file under `media/{manifest['policy']['dataset']}/videos/{{train,test}}/`; `-1` where a field does not "
        "apply; `Reasoning` is the video's released chain as VAU-R1's six-part dict, `-1` without one; no `Key "
        "Object`).",
        "- `reasoning` rows (events and videos, in `data/` and every conversation export): the item's reasoning "
        "chain, one labelled field per line: `Perception:` (`Scene:`, then `[start-end s]` per clip or event, in "
        "seconds of the source video), `Cognition:` (`What happens:`, `Why:`, `Cause:`, `Consequence:`), "
        "`Conclusion:` (agrees with the label). Released under the same review rules as every other text.",
        *rl_export_card_lines(),
        "- `manifest.json`: counts, the SHA-256 of every file, generators and the release this one follows.", "",
    ]
    return "\n".join(parts)


def rl_export_card_lines() -> list[str]:
    """The card's lines on the verifiable tasks' SFT and GRPO exports."""
    return [
        "- `sft/llamafactory/{train,test}.jsonl` and `sft/llamafactory/dataset_info.json` (datasets "
        f"`{SFT_DATASET_PREFIX}_train`, `{SFT_DATASET_PREFIX}_test`), and the same rows in `sft/swift/{{train,test}}"
        ".jsonl`: the `vau/` tasks as `messages` + `videos` SFT rows, one per task, whose targets are VAU-R1's tags: "
        "`<think>chain</think><answer>B</answer>`, `<think>chain</think><answer><glue>[12.5, 20.0]</glue></answer>` "
        "for grounding (`[-1, -1]`: a normal video), where `chain` is the item's released reasoning chain (the "
        "video's for video tasks, the event's for event grounding); a task whose item has no released chain (a clip, "
        "or a chain held back by review) asks for the answer alone and its target has no `<think>`. Use them like "
        "`llamafactory/` "
        "(`dataset_dir` = `sft/llamafactory/`, `media_dir` = this folder) and `swift/` (run from this folder).",
        "- `grpo/swift/{train,test}.jsonl`: ms-swift GRPO rows (`swift rlhf --rlhf_type grpo`, run from this "
        "folder): `messages` with the user turn only (its prompt asks for `<think>..</think><answer>..</answer>`, "
        "spans as `<glue>[start, end]</glue>`), `videos`, and the columns ms-swift passes to reward functions: "
        "`solution` (a letter, `[start, end]`, a class or Normal, yes/no), `task` (choice, grounding, classify, "
        "detect), `options` (the choice's four texts, else empty), `id`, `duration_s`.",
        "- `grpo/trl/{train,test}.jsonl`: TRL `GRPOTrainer` rows (`datasets.load_dataset('json', ...)`): a "
        "conversational `prompt` and the same reward columns (`solution`, `task`, `options`, `id`, `duration_s`). "
        "TRL 1.16's GRPOTrainer takes no video (only an `images`/`image` column of PIL images), so `video` holds the "
        "path of the video, relative to this folder: decode frames from it into an `images` column before training "
        "(TRL adds one image block per frame to the prompt; for grounding, tell the model each frame's time, "
        "e.g. in the prompt: `duration_s` is the video's length).",
    ]


# ---------------------------------------------------------------- the release folder
def next_name(releases: Path) -> str:
    taken = [int(p.name[1:]) for p in releases.glob("v[0-9][0-9][0-9][0-9]") if p.is_dir()]
    return f"v{max(taken, default=0) + 1:04d}"


# the hidden folder a release is written in before its rename: `.{name}.{mkdtemp's 8 characters}`
UNFINISHED = re.compile(r"^\.[^.].*\.[a-z0-9_]{8}$")


def remove_unfinished(releases: Path) -> None:
    """Remove the folders of releases that never finished (a killed run): they hold disk space and are never
    read. Called under the workspace's lock, so none of them is being written."""
    for tmp in releases.iterdir():
        if tmp.is_dir() and UNFINISHED.match(tmp.name):
            shutil.rmtree(tmp, ignore_errors=True)


def latest_release(releases: Path) -> Optional[Path]:
    done = sorted(p for p in releases.glob("v[0-9][0-9][0-9][0-9]") if (p / "manifest.json").is_file())
    return done[-1] if done else None


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # same filesystem: no extra space, and the release cannot change the workspace copy
    except OSError:
        shutil.copy2(src, dst)


def collect_media(ws: Workspace, tables: Tables, settings: ReleaseSettings) -> dict[str, tuple[Path, str]]:
    """item id -> (workspace file, path inside the release) for every item whose media exist; the paths follow
    HIVAU-70k's layout (`media/{dataset}/clips/{split}/{vid}_E0C0.mp4`, `.../events/...`, `.../videos/...`)."""
    out = {}
    splits = video_splits(tables, settings)
    for level, rows, id_of in (("clip", tables.clips, lambda r: r.clip_id),
                               ("event", tables.events, lambda r: r.event_id)):
        for row in rows:
            if row.media_path and (ws.root / row.media_path).is_file():
                out[id_of(row)] = (ws.root / row.media_path,
                                   hivau_media_path(settings.dataset, level, splits[row.video_id], f"{id_of(row)}.mp4"))
    for v in tables.videos:
        src = playable_video(ws, v.video_id) or Path(v.path)
        if src.is_file():
            out[v.video_id] = (src, hivau_media_path(settings.dataset, "video", splits[v.video_id],
                                                     f"{v.video_id}{src.suffix}"))
    return out


def _write_parquet(rows: list, path: Path, model: type = InstructionRow) -> None:
    import pyarrow.parquet as pq

    pq.write_table(to_arrow_table(rows, model), path)


def _write_csv(rows: list[dict], path: Path, columns: tuple[str, ...]) -> None:
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def counts_of(rows: list[InstructionRow]) -> dict:
    items = {(r.level, r.item_id, ", ".join(r.labels) if r.is_anomaly else "Normal") for r in rows}
    by_class_level: dict[str, Counter] = {}
    for level, _, cls in items:
        by_class_level.setdefault(cls, Counter())[level] += 1
    return {
        "rows": len(rows),
        "source_videos": len({r.source_video for r in rows}),
        "rows_by_split": dict(Counter(r.split for r in rows)),
        "videos_by_split": dict(Counter(s for s, _ in {(r.split, r.source_video) for r in rows})),
        "rows_by_level_task": dict(Counter(f"{r.level}:{r.task}" for r in rows)),
        "rows_by_provenance": dict(Counter(r.provenance for r in rows)),
        "items_by_level": dict(Counter(level for level, _, _ in items)),
        "items_by_class_level": {k: dict(v) for k, v in sorted(by_class_level.items())},
    }


def build_release(ws: Workspace, settings: ReleaseSettings = ReleaseSettings(), lock_wait_s: float = 0) -> Path:
    """Write the next release folder from the workspace's merged manifests; returns its path."""
    with ws.lock("publish-release", lock_wait_s):
        return _build_release(ws, settings)


def _build_release(ws: Workspace, settings: ReleaseSettings) -> Path:
    tables = ws.manifest_tables()
    media = collect_media(ws, tables, settings)
    held_back: Counter = Counter()
    media_of = {k: v[1] for k, v in media.items()}
    rows = instruction_rows(tables, settings, media_of, held_back)
    if not rows:
        raise ReleaseError(f"nothing to release from {ws.root}: no reviewed rows"
                           + ("" if settings.include_unreviewed else " (use include_unreviewed to let drafts in)"))
    with disk_full_guard(ws.releases):
        ws.releases.mkdir(parents=True, exist_ok=True)
    remove_unfinished(ws.releases)
    name = settings.name or next_name(ws.releases)
    final = ws.releases / name
    if final.exists():
        raise ReleaseError(f"release {final} exists; releases are never rewritten")
    previous = latest_release(ws.releases)
    tasks = sorted(vau_tasks(tables, rows, video_splits(tables, settings), media_of,
                             {v.video_id: v.duration_s for v in tables.videos}, settings.task_seed),
                   key=lambda t: (t.source_video, LEVEL_ORDER[t.level], t.item_id, t.id))
    # the released chains (they passed the review rules as `reasoning` rows), for the tasks' <think>
    chains = {r.item_id: r.answer for r in rows if r.task == "reasoning"}
    not_written = f"release {name} was not written (its unfinished folder is removed); earlier releases are untouched"
    with disk_full_guard(final, note=not_written):
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=ws.releases))
    try:
        for folder in ("data", "hivau", "llamafactory", "swift", "vau", "vau_r1"):
            (tmp / folder).mkdir()
        for folder in RL_EXPORT_FOLDERS:
            (tmp / folder).mkdir(parents=True)
        first_id = 0  # one id sequence over both splits, as HIVAU-70k's rows have
        for split in ("train", "test"):
            part = [r for r in rows if r.split == split]
            _write_parquet(part, tmp / "data" / f"{split}.parquet")
            write_jsonl(tmp / "hivau" / f"{split}.jsonl", (hivau_record(first_id + i, r) for i, r in enumerate(part)))
            first_id += len(part)
            # media paths relative to the release: LLaMA-Factory is given it as media_dir, swift runs from it
            # LLaMA-Factory and ms-swift read the same rows: written once, copied
            write_jsonl(tmp / "llamafactory" / f"{split}.jsonl", (messages_record(r, r.media_path) for r in part))
            shutil.copyfile(tmp / "llamafactory" / f"{split}.jsonl", tmp / "swift" / f"{split}.jsonl")
            split_tasks = [t for t in tasks if t.split == split]
            _write_parquet(split_tasks, tmp / "vau" / f"{split}.parquet", VauTaskRow)
            _write_csv(vau_r1_rows(split_tasks, chains), tmp / "vau_r1" / f"{split}.csv", VAU_R1_COLUMNS)
            # the verifiable tasks for SFT (with the item's released chain inside <think>, else the answer alone)
            # and GRPO; media relative to the release, as in llamafactory/ and swift/
            write_jsonl(tmp / "sft" / "llamafactory" / f"{split}.jsonl",
                        (sft_record(t, chain=chains.get(t.item_id)) for t in split_tasks))
            shutil.copyfile(tmp / "sft" / "llamafactory" / f"{split}.jsonl", tmp / "sft" / "swift" / f"{split}.jsonl")
            write_jsonl(tmp / "grpo" / "swift" / f"{split}.jsonl", (swift_grpo_record(t) for t in split_tasks))
            write_jsonl(tmp / "grpo" / "trl" / f"{split}.jsonl", (trl_grpo_record(t) for t in split_tasks))
        (tmp / "llamafactory" / "dataset_info.json").write_text(json.dumps(
            llamafactory_dataset_info({s: f"{s}.jsonl" for s in ("train", "test")}), indent=2))
        (tmp / "sft" / "llamafactory" / "dataset_info.json").write_text(json.dumps(
            llamafactory_dataset_info({s: f"{s}.jsonl" for s in ("train", "test")}, prefix=SFT_DATASET_PREFIX),
            indent=2))
        used = {r.item_id for r in rows}
        for item_id, (src, rel) in media.items():
            if item_id in used:
                _link_or_copy(src, tmp / rel)
        counts = counts_of(rows)
        counts["vau_tasks"] = dict(Counter(f"{t.split}:{t.level}:{t.task}" for t in tasks))
        (tmp / "chart.svg").write_text(bar_chart_svg(counts["items_by_class_level"], "items per anomaly class and level"))
        files = {p.relative_to(tmp).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        content = hashlib.sha256(json.dumps({k: v["sha256"] for k, v in files.items()}, sort_keys=True).encode())
        prev_manifest = json.loads((previous / "manifest.json").read_text()) if previous else None
        reviews = ws.read_records("reviews")
        summary_path = ws.manifests / "summary.json"
        rule = json.loads(summary_path.read_text()).get("review_rule") if summary_path.is_file() else None
        manifest = {
            "name": name, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "previous": previous.name if previous else None, "schema_version": SCHEMA_VERSION,
            "policy": settings.model_dump(exclude={"name"}), "counts": counts,
            "generators": dict(Counter(f"{r.generator.backend}:{r.generator.model or '-'}@{r.generator.prompt_version or '-'}"
                                       for r in rows)),
            "prompt_versions": sorted({r.generator.prompt_version for r in rows if r.generator.prompt_version}),
            "content_sha256": content.hexdigest(),
            # the audit sample's outcomes per level and generator, and the rule that picked annotations
            "audit": audit_table(tables, reviews), "review_rule": rule,
            # the draft checks on the audit sample, and the draft rows they kept out (rows per check)
            "checks": check_gate_table(tables, reviews), "held_back_by_check": dict(held_back),
            "split_sources": split_sources(tables, rows, settings),
            "same_content_as_previous": bool(prev_manifest and prev_manifest.get("content_sha256") == content.hexdigest()),
            "files": files,
        }
        (tmp / "README.md").write_text(dataset_card(manifest))
        manifest["files"]["README.md"] = {"sha256": sha256_file(tmp / "README.md"), "bytes": (tmp / "README.md").stat().st_size}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        for p in tmp.rglob("*"):
            if p.is_file() and p.parts[len(tmp.parts)] != "media":  # media are hard links shared with the workspace
                p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.rename(tmp, final)  # atomic: a release is either whole or absent
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(final, note=not_written) from exc
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def verify_release(path: str | Path) -> dict:
    """Check a release against its manifest (every file present with its hash); returns the manifest."""
    root = Path(path)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise ReleaseError(f"{root} is not a release: no manifest.json")
    manifest = json.loads(manifest_path.read_text())
    bad = [rel for rel, meta in manifest["files"].items()
           if not (root / rel).is_file() or sha256_file(root / rel) != meta["sha256"]]
    if bad:
        raise ReleaseError(f"release {root.name}: {len(bad)} files missing or changed, e.g. {bad[:3]}")
    return manifest


def announce_release(path: Path, manifest: dict) -> None:
    """Tell Prefect a release exists; the `retrain` deployment's trigger listens for this event."""
    emit_event(event=RELEASE_EVENT,
               resource={"prefect.resource.id": f"hivau.release.{manifest['content_sha256'][:16]}",
                         "prefect.resource.name": manifest["name"], "hivau.release.path": str(path)},
               payload={"path": str(path), "name": manifest["name"], "rows": manifest["counts"]["rows"],
                        "previous": manifest["previous"]})
