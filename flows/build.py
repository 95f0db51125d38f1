"""`build-hivau`: ingest, probe, decouple, cut, caption, roll up and extract motion, as a Prefect flow.

The flow moves ids and settings only: every video's record lives in the workspace's store, and the work goes
to tasks a shard of videos at a time (probe/plan/cut, captioning, motion phrases, review media), on threads,
a local Dask cluster, or an existing one (`dask_address`).
"""

from __future__ import annotations

import signal
import time
from datetime import datetime, timezone
from typing import Annotated, Callable, Literal, Optional

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import task_run
from pydantic import Field

from hivau.flows.review import push_for_review
from hivau.progress import progress_bar
from hivau.schemas import reasons
from hivau.schemas.records import AnnotationFormat, CutMode, DeclaredSplit, Level
from hivau.stopping import Stopped, set_activity, stop_on_signals, stop_requested
from hivau.tasks import manifests
from hivau.tasks.build.cut import CutSettings
from hivau.tasks.build.plan import PlanSettings
from hivau.tasks.review.projects import ReviewSettings
from hivau.tasks.shards import (
    ShardReport,
    caption_shard,
    default_batch_id,
    failed_item,
    ingest_batch,
    motion_shard,
    probe_plan_cut_shard,
    review_media_shard,
    shards,
    verify_shard,
)
from hivau.tasks.text.caption import CaptionSettings, caption_stream
from hivau.tasks.text.rollup import RollupSettings, run_rollup
from hivau.workspace import DiskFullError, Workspace, is_disk_full

TaskRunnerKind = Literal["threads", "dask"]
SHARD_RETRIES = 2


def retry_unless_disk_full(task, task_run, state) -> bool:
    """A full disk stays full on a retry: stop at once (free space and run again)."""
    return not is_disk_full(state.result(raise_on_failure=False))


@task(cache_policy=NO_CACHE)
def ingest_videos(workspace: str, batch: str, fmt: AnnotationFormat, annotations: Optional[str],
                  videos_dir: Optional[str], labels: Optional[str], split: DeclaredSplit = "auto") -> list[str]:
    """Read the annotations into the store; returns the batch's video ids."""
    record = ingest_batch(Workspace.at(workspace), batch, fmt, annotations, videos_dir, labels, split)
    logger = get_run_logger()
    logger.info("ingest: %d entries, %d videos found, %d quarantined at ingest; split: %s", record.n_entries,
                len(record.video_ids), len(record.quarantine), split)
    conflicts = [q for q in record.quarantine if q.reason == reasons.SPLIT_CONFLICT]
    if conflicts:
        logger.error("%d videos of batch %s are declared for the other split by another batch, and stay there: %s",
                     len(conflicts), batch, "; ".join(q.detail for q in conflicts[:5]))
    return record.video_ids


@task(retries=SHARD_RETRIES, retry_delay_seconds=2, retry_condition_fn=retry_unless_disk_full, cache_policy=NO_CACHE)
def probe_plan_cut_videos(workspace: str, video_ids: list[str], cut_mode: CutMode, plan: PlanSettings,
               cut: CutSettings) -> ShardReport:
    # Earlier attempts raise so Prefect retries (finished segments are resumed, not redone); the last
    # attempt records what still fails as quarantine instead, so the shard's other segments survive.
    last_attempt = (task_run.run_count or 1) > SHARD_RETRIES
    return probe_plan_cut_shard(Workspace.at(workspace), video_ids, cut_mode, plan, cut, record_failures=last_attempt)


@task(retries=SHARD_RETRIES, retry_delay_seconds=2, retry_condition_fn=retry_unless_disk_full, cache_policy=NO_CACHE)
def caption_videos(workspace: str, video_ids: list[str], settings: CaptionSettings) -> ShardReport:
    return caption_shard(Workspace.at(workspace), video_ids, settings)


@task(cache_policy=NO_CACHE)
def caption_videos_online(workspace: str, video_ids: list[str], settings: CaptionSettings) -> ShardReport:
    """The OpenAI-compatible captioner over the whole batch from this process (its work is requests, so one
    client keeps `llm.concurrency` of them in flight across videos); usage goes to an artifact."""
    ws = Workspace.at(workspace)
    report = ShardReport()
    with progress_bar("captioning clips", total=len(video_ids)) as advance:
        def saved(item) -> None:
            report.save(ws, item)
            advance()

        usage = caption_stream(ws.iter_videos(video_ids), ws, settings, saved)
        report.finish()
    create_table_artifact(usage.rows(settings.llm, settings.model), key="build-hivau-caption-usage",
                          description="captioner requests, tokens and estimated cost (openai)")
    return report


@task(retries=SHARD_RETRIES, retry_delay_seconds=2, retry_condition_fn=retry_unless_disk_full, cache_policy=NO_CACHE)
def extract_motion_phrases(workspace: str, video_ids: list[str]) -> ShardReport:
    return motion_shard(Workspace.at(workspace), video_ids)


@task(retries=SHARD_RETRIES, retry_delay_seconds=2, retry_condition_fn=retry_unless_disk_full, cache_policy=NO_CACHE)
def verify_drafts(workspace: str, video_ids: list[str], levels: tuple[Level, ...]) -> ShardReport:
    return verify_shard(Workspace.at(workspace), video_ids, levels)


@task(retries=SHARD_RETRIES, retry_delay_seconds=2, retry_condition_fn=retry_unless_disk_full, cache_policy=NO_CACHE)
def cut_review_media(workspace: str, video_ids: list[str], context_s: float) -> ShardReport:
    return review_media_shard(Workspace.at(workspace), video_ids, context_s)


@task(cache_policy=NO_CACHE)
def roll_up_texts(workspace: str, video_ids: list[str], settings: RollupSettings) -> str:
    """Event and video summaries with their splits, 5W2H pairs and reasoning chains; LLM answers are cached in state/."""
    logger = get_run_logger()
    ws = Workspace.at(workspace)
    with progress_bar("drafting summaries and QA", total=len(video_ids)) as advance:
        def saved(item) -> None:  # each video as it finishes, so a killed run loses little
            ws.put_video(item)
            advance()

        # one client for the whole batch: `llm.concurrency` requests stay in flight across videos
        run = run_rollup(ws.iter_videos(video_ids), ws.llm_cache, settings, on_done=saved, keep=False)
    usage, model, backend, note = run.usage, run.model, run.backend, run.note
    logger.info(note)
    create_table_artifact(usage.rows(settings.llm, model), key="build-hivau-llm-usage",
                          description=f"roll-up requests, tokens and estimated cost ({backend})")
    logger.info("roll-up: %d requests sent, %d answered from cache, %d retries, %d prompt + %d completion tokens",
                usage.requests, usage.cache_hits, usage.retries, usage.prompt_tokens, usage.completion_tokens)
    return note


def make_task_runner(kind: TaskRunnerKind, max_workers: int, dask_address: Optional[str] = None):
    if kind == "dask" or dask_address:
        from prefect_dask import DaskTaskRunner

        if dask_address:  # an existing cluster: its workers need the same paths and this package installed
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": max_workers, "threads_per_worker": 1, "processes": True})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=max_workers)


class Progress:
    """One progress artifact for the whole build, advanced stage by stage as shards finish."""

    def __init__(self, stages: int):
        self.artifact = create_progress_artifact(0.0, key="build-hivau-progress",
                                                 description="shards of videos through cut, caption, roll-up, motion")
        self.stages, self.stage = stages, 0

    def update(self, fraction: float) -> None:
        update_progress_artifact(self.artifact, round(100.0 * (self.stage + fraction) / self.stages, 2))


def run_shards(stage: str, submit: Callable[[list[str]], object], video_ids: list[str], shard_size: int,
               workspace: str, progress: Progress) -> list[ShardReport]:
    """Submit one task per shard and report progress as shards finish; a shard that fails after its retries
    has its videos quarantined with the error, and the run goes on."""
    logger = get_run_logger()
    ws = Workspace.at(workspace)
    parts = shards(video_ids, shard_size)
    set_activity(f"{stage}: 0 of {len(video_ids)} videos done")
    futures = {id(f): (f, part) for part in parts for f in [submit(part)]}
    reports, done_videos = [], 0
    with progress_bar(stage, total=len(video_ids)) as advance:
        for future in as_completed([f for f, _ in futures.values()]):
            part = futures[id(future)][1]
            outcome = future.result(raise_on_failure=False)
            if isinstance(outcome, Stopped) or stop_requested():
                raise Stopped(getattr(outcome, "signum", signal.SIGINT))  # its videos are not at fault
            if isinstance(outcome, DiskFullError):
                raise outcome  # nor here: stop the run (free space and run it again)
            if isinstance(outcome, BaseException):
                logger.error("%s: a shard of %d videos failed after retries: %s", stage, len(part), outcome)
                for item in ws.iter_videos(part):
                    if item.status != "quarantined":
                        ws.put_video(failed_item(item, stage, outcome))
            else:
                reports.append(outcome)
            done_videos += len(part)
            set_activity(f"{stage}: {done_videos} of {len(video_ids)} videos done")
            progress.update(done_videos / max(len(video_ids), 1))
            for _ in part:
                advance()
    progress.stage += 1
    return reports


@flow(name="process-videos")
def process_videos(workspace: str, batch: str, cut_mode: CutMode, plan: PlanSettings, cut: CutSettings,
                   captioner: CaptionSettings, rollup: RollupSettings, review_context_s: Optional[float],
                   shard_size: int) -> dict:
    """Every stage of one batch, shard by shard, on the flow's task runner (the roll-up talks to the LLM from here)."""
    with stop_on_signals():  # Prefect puts its own SIGTERM handler back for a subflow: ours goes over it again
        return process_stages(workspace, batch, cut_mode, plan, cut, captioner, rollup, review_context_s, shard_size)


def process_stages(workspace: str, batch: str, cut_mode: CutMode, plan: PlanSettings, cut: CutSettings,
                   captioner: CaptionSettings, rollup: RollupSettings, review_context_s: Optional[float],
                   shard_size: int) -> dict:
    video_ids = Workspace.at(workspace).get_batch(batch).video_ids
    progress = Progress(6 + (review_context_s is not None))
    seconds: dict[str, float] = {}
    clock = time.monotonic()

    def timed(stage: str) -> None:
        nonlocal clock
        seconds[stage], clock = round(time.monotonic() - clock, 3), time.monotonic()

    reports = {"cut": run_shards("cut", lambda part: probe_plan_cut_videos.submit(workspace, part, cut_mode, plan, cut),
                                 video_ids, shard_size, workspace, progress)}
    timed("probe_plan_cut")
    if captioner.backend == "openai":
        set_activity(f"captioning the clips of {len(video_ids)} videos (answers already received are cached)")
        reports["caption"] = [caption_videos_online(workspace, video_ids, captioner)]
        progress.stage += 1
        progress.update(0.0)
    else:
        reports["caption"] = run_shards("caption", lambda part: caption_videos.submit(workspace, part, captioner),
                                        video_ids, shard_size, workspace, progress)
    timed("caption")
    # clip captions are checked before the roll-up reads them; events and videos once they are drafted
    reports["verify-captions"] = run_shards(
        "verify-captions", lambda part: verify_drafts.submit(workspace, part, ("clip",)), video_ids, shard_size,
        workspace, progress)
    timed("verify_captions")
    set_activity(f"roll-up of {len(video_ids)} videos (answers already received are cached)")
    rollup_note = roll_up_texts(workspace, video_ids, rollup)
    progress.stage += 1
    progress.update(0.0)
    timed("rollup")
    reports["verify"] = run_shards("verify", lambda part: verify_drafts.submit(workspace, part, ("event", "video")),
                                   video_ids, shard_size, workspace, progress)
    timed("verify")
    reports["motion"] = run_shards("motion", lambda part: extract_motion_phrases.submit(workspace, part), video_ids,
                                   shard_size, workspace, progress)
    timed("motion")
    if review_context_s is not None:
        reports["review-media"] = run_shards(
            "review-media", lambda part: cut_review_media.submit(workspace, part, review_context_s), video_ids,
            shard_size, workspace, progress)
        timed("review_media")
    cuts = reports["cut"]
    return {"segments_cut": sum(r.segments_cut for r in cuts), "segments_resumed": sum(r.segments_resumed for r in cuts),
            "workers": sorted({f"{r.host}:{r.pid}" for rs in reports.values() for r in rs}),
            "workers_by_stage": {stage: sorted({f"{r.host}:{r.pid}" for r in rs}) for stage, rs in reports.items()},
            "seconds_by_stage": seconds, "rollup": rollup_note,
            "shard_seconds": {stage: [r.seconds for r in rs] for stage, rs in reports.items()}}


@task(cache_policy=NO_CACHE)
def write_manifests(workspace: str) -> dict:
    """The manifests of everything in the workspace (every batch), merged with the stored reviews, as one set."""
    result = manifests.write_manifests(Workspace.at(workspace))
    return {"summary": result.summary.model_dump(), "batches": {k: v.model_dump() for k, v in result.batches.items()}}


@flow(name="build-hivau", log_prints=True)
def build_hivau(
    videos_dir: Annotated[str, Field(description="folder of source videos (searched recursively)")],
    workspace: Annotated[str, Field(description="output folder: media/, manifests/, state/")],
    annotations: Annotated[Optional[str], Field(description="annotation file (not needed for format 'none')")] = None,
    format: Annotated[AnnotationFormat, Field(description="hivau | uca | csv | none")] = "hivau",
    labels: Annotated[Optional[str], Field(description="event label file, for the 'uca' format")] = None,
    batch: Annotated[Optional[str], Field(description="this batch's name in the workspace; default: from the "
                                                      "annotation file (or videos folder) name")] = None,
    split: Annotated[DeclaredSplit, Field(description="the release split of this batch's videos: train, test (an "
                                                      "official test file), or auto (by a hash of each video id)")] = "auto",
    cut_mode: Annotated[CutMode, Field(description="accurate: re-encode at exact times; copy: keyframe-snapped")] = "accurate",
    plan: PlanSettings = PlanSettings(),
    cut: CutSettings = CutSettings(),
    captioner: CaptionSettings = CaptionSettings(),
    rollup: RollupSettings = RollupSettings(),
    review: ReviewSettings = ReviewSettings(),
    task_runner: TaskRunnerKind = "threads",
    max_workers: Annotated[int, Field(ge=1)] = 4,
    dask_address: Annotated[Optional[str], Field(description="an existing Dask scheduler, tcp://HOST:PORT")] = None,
    shard_size: Annotated[int, Field(ge=1, description="videos per task")] = 25,
    lock_wait_s: Annotated[float, Field(ge=0, description="wait this long for another operation on the workspace")] = 0,
) -> dict:
    """Build the hierarchical (video / event / clip) records of one batch into a workspace that accumulates
    batches, and write the manifests of all of them."""
    ws = Workspace.at(workspace)
    batch = batch or default_batch_id(format, annotations, videos_dir)
    # a stop (Ctrl-C, SIGTERM, a cancelled deployment run) ends every shard at its next video and kills ffmpeg
    with stop_on_signals(), ws.lock(f"build-hivau (batch {batch})", lock_wait_s):
        set_activity("ingest")
        ingest_videos(str(ws.root), batch, format, annotations, videos_dir, labels, split)
        runner = make_task_runner(task_runner, max_workers, dask_address)
        context = review.event_context_s if review.should_push() else None
        work = process_videos.with_options(task_runner=runner)(str(ws.root), batch, cut_mode, plan, cut, captioner,
                                                                rollup, context, shard_size)
        print(work["rollup"])
        record = ws.get_batch(batch)
        ws.put_batch(record.model_copy(update={"last_build": work,
                                               "built_at": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"}))
        set_activity("writing the manifests")
        written = write_manifests(str(ws.root))
        summary, total = written["batches"].get(batch, {}), written["summary"]
        create_table_artifact(total_rows(summary, total), key="build-hivau-summary",
                              description=f"build-hivau batch {batch} into {workspace}")
        create_table_artifact(check_rows(summary), key="build-hivau-checks",
                              description=f"draft checks of batch {batch}: failed checks per check, level, severity")
        if review.should_push():
            set_activity("pushing drafts to Label Studio")
            pushed = push_for_review(str(ws.root), review)
            print(f"review: drafts waiting in Label Studio at {pushed.url} (projects {pushed.projects})")
    print(f"done: batch {batch}: {summary.get('videos_processed', 0)} videos processed, "
          f"{summary.get('videos_quarantined', 0)} quarantined, {summary.get('events', 0)} events, "
          f"{summary.get('clips', 0)} clips, {summary.get('captions', 0)} captions, {summary.get('summaries', 0)} "
          f"summaries, {summary.get('qa_pairs', 0)} QA pairs, {summary.get('chains', 0)} reasoning chains, "
          f"{summary.get('motion_phrases', 0)} motion phrases; "
          f"checks: {summary.get('flagged_error', 0)} texts with an error flag, {summary.get('flagged_warn', 0)} "
          f"with warnings, {summary.get('drafts_repaired', 0)} drafts repaired, "
          f"{summary.get('drafts_still_failing', 0)} still failing; "
          f"workspace: {total['videos_processed']} videos in {len(written['batches'])} batches; "
          f"manifests in {workspace}/manifests")
    return {**summary, "batch": batch, "workspace_totals": {k: v for k, v in total.items() if not isinstance(v, dict)},
            "work": work}


def total_rows(batch: dict, total: dict) -> list[dict]:
    """The run summary table: `value` is this batch's figure, `workspace` the total over all batches."""
    rows = [{"metric": k, "value": v, "workspace": total.get(k)} for k, v in batch.items() if not isinstance(v, dict)]
    rows += [{"metric": f"quarantined:{k}", "value": v, "workspace": total["quarantined_by_reason"].get(k)}
             for k, v in sorted(batch.get("quarantined_by_reason", {}).items())]
    rows += [{"metric": f"checks:{k}", "value": v, "workspace": total["checks_by_level"].get(k)}
             for k, v in sorted(batch.get("checks_by_level", {}).items())]
    return rows


def check_rows(summary: dict) -> list[dict]:
    """The draft checks' artifact: failed checks per check, level and severity."""
    rows = []
    for key, n in sorted(summary.get("checks_by_level", {}).items()):
        level, check, severity = key.split(":")
        rows.append({"check": check, "level": level, "severity": severity, "texts": n})
    return rows + [{"check": "drafts_repaired", "level": "-", "severity": "-", "texts": summary.get("drafts_repaired", 0)},
                   {"check": "drafts_still_failing", "level": "-", "severity": "-",
                    "texts": summary.get("drafts_still_failing", 0)}]
