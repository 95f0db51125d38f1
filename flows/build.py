"""`build-hivau`: ingest, probe, decouple, cut, caption, roll up and extract motion, as a Prefect flow."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import task_run
from pydantic import Field

from hivau.flows.review import push_for_review
from hivau.progress import progress_bar
from hivau.schemas import reasons
from hivau.schemas.item import VideoItem
from hivau.schemas.records import AnnotationFormat, CutMode, QuarantineRecord
from hivau.tasks.caption import CaptionSettings, caption_item, make_captioner
from hivau.tasks.cut import CutSettings
from hivau.tasks.decouple import PlanSettings, plan_video
from hivau.tasks.ingest import IngestReport, load_annotations
from hivau.tasks.motion import motion_records
from hivau.tasks.review import ReviewSettings
from hivau.tasks.rollup import RollupSettings, run_rollup
from hivau.tasks.stages import (RunSummary, apply_reviewed_boundaries, apply_reviewed_proposals, cut_item, probe_item,
                                write_manifests)
from hivau.workspace import Workspace, atomic_write_json

TaskRunnerKind = Literal["threads", "dask"]
CUT_RETRIES = 2


@task(cache_policy=NO_CACHE)
def ingest_annotations(fmt: AnnotationFormat, annotations: Optional[str], videos_dir: Optional[str],
                       labels: Optional[str]) -> IngestReport:
    return load_annotations(fmt, annotations, videos_dir, labels)


@task(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def probe_source(item: VideoItem) -> VideoItem:
    return probe_item(item)


@task(cache_policy=NO_CACHE)
def plan_segments(item: VideoItem, settings: PlanSettings, workspace: str) -> VideoItem:
    if item.status == "quarantined":
        return item
    ws = Workspace.at(workspace)
    return apply_reviewed_boundaries(plan_video(apply_reviewed_proposals(item, ws), settings), ws)


@task(retries=CUT_RETRIES, retry_delay_seconds=2, cache_policy=NO_CACHE)
def cut_segments(item: VideoItem, workspace: str, cut_mode: CutMode, settings: CutSettings) -> VideoItem:
    if item.status == "quarantined":
        return item
    # Earlier attempts raise so Prefect retries (finished segments are resumed, not redone); the last
    # attempt records what still fails as quarantine instead, so the video's other segments survive.
    last_attempt = (task_run.run_count or 1) > CUT_RETRIES
    return cut_item(item, Workspace.at(workspace), cut_mode, settings, record_failures=last_attempt)


@task(cache_policy=NO_CACHE)
def caption_clips(items: list[VideoItem], workspace: str, settings: CaptionSettings) -> list[VideoItem]:
    """Caption clips without a caption (model backends), or record which lack one (`provided`)."""
    logger = get_run_logger()
    ws = Workspace.at(workspace)
    captioner = make_captioner(settings, ws)
    if captioner is not None:
        logger.info("captioning clips with %s %s", captioner.generator.backend, captioner.generator.model)
    out = []
    with progress_bar("captioning clips", total=len(items)) as advance:
        for item in items:
            out.append(caption_item(item, ws, captioner, settings))
            advance()
    return out


@task(cache_policy=NO_CACHE)
def roll_up_texts(items: list[VideoItem], workspace: str, settings: RollupSettings) -> list[VideoItem]:
    """Event and video summaries with their splits, and 5W2H pairs; LLM answers are cached in state/."""
    logger = get_run_logger()
    ws = Workspace.at(workspace)
    with progress_bar("drafting summaries and QA", total=len(items)) as advance:
        def saved(item: VideoItem) -> None:  # per-video state as each finishes, so a killed run loses little
            atomic_write_json(ws.video_state(item.video_id), item.model_dump(mode="json"))
            advance()

        run = run_rollup(items, ws.state / "llm_cache", settings, on_done=saved)
    logger.info(run.note)
    create_table_artifact(run.usage.rows(settings.llm, run.model), key="build-hivau-llm-usage",
                          description=f"roll-up requests, tokens and estimated cost ({run.backend})")
    logger.info("roll-up: %d requests sent, %d answered from cache, %d retries, %d prompt + %d completion tokens",
                run.usage.requests, run.usage.cache_hits, run.usage.retries, run.usage.prompt_tokens,
                run.usage.completion_tokens)
    return run.items


@task(cache_policy=NO_CACHE)
def extract_motion_phrases(items: list[VideoItem]) -> list[VideoItem]:
    out = []
    for item in items:
        item = item.model_copy()
        item.motion_phrases = motion_records(item) if item.status != "quarantined" else []
        out.append(item)
    return out


@task(cache_policy=NO_CACHE)
def write_run_manifests(workspace: str, report: IngestReport, items: list[VideoItem]) -> RunSummary:
    return write_manifests(Workspace.at(workspace), report, items)


def make_task_runner(kind: TaskRunnerKind, max_workers: int):
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(cluster_kwargs={"n_workers": max_workers, "threads_per_worker": 1, "processes": True})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=max_workers)


def _failed_item(item: VideoItem, error: BaseException) -> VideoItem:
    item = item.model_copy(deep=True)
    item.quarantine.append(QuarantineRecord(item_id=item.video_id, video_id=item.video_id, level="video",
                                            reason=reasons.CUT_FAILED, detail=f"{type(error).__name__}: {error}",
                                            stage="cut", source=item.source))
    item.status = "quarantined"
    return item


@flow(name="process-videos")
def process_videos(items: list[VideoItem], workspace: str, cut_mode: CutMode, plan: PlanSettings,
                   cut: CutSettings) -> list[VideoItem]:
    """Probe, plan and cut every video concurrently on the task runner, reporting progress as videos finish."""
    logger = get_run_logger()
    probed = probe_source.map(items)
    planned = plan_segments.map(probed, unmapped(plan), unmapped(workspace))
    cuts = cut_segments.map(planned, unmapped(workspace), unmapped(cut_mode), unmapped(cut))
    artifact = create_progress_artifact(0.0, key="build-hivau-progress", description="videos probed, planned and cut")
    index = {id(f): i for i, f in enumerate(cuts)}
    results: list[Optional[VideoItem]] = [None] * len(items)
    with progress_bar("cutting videos", total=len(items)) as advance:
        for done, future in enumerate(as_completed(list(cuts)), 1):
            i = index[id(future)]
            outcome = future.result(raise_on_failure=False)
            if isinstance(outcome, BaseException):
                logger.error("video %s failed after retries: %s", items[i].video_id, outcome)
                outcome = _failed_item(items[i], outcome)
            results[i] = outcome
            update_progress_artifact(artifact, 100.0 * done / max(len(items), 1))
            advance()
    return results


@flow(name="build-hivau", log_prints=True)
def build_hivau(
    videos_dir: Annotated[str, Field(description="folder of source videos (searched recursively)")],
    workspace: Annotated[str, Field(description="output folder: media/, manifests/, state/")],
    annotations: Annotated[Optional[str], Field(description="annotation file (not needed for format 'none')")] = None,
    format: Annotated[AnnotationFormat, Field(description="hivau | uca | csv | none")] = "hivau",
    labels: Annotated[Optional[str], Field(description="event label file, for the 'uca' format")] = None,
    cut_mode: Annotated[CutMode, Field(description="accurate: re-encode at exact times; copy: keyframe-snapped")] = "accurate",
    plan: PlanSettings = PlanSettings(),
    cut: CutSettings = CutSettings(),
    captioner: CaptionSettings = CaptionSettings(),
    rollup: RollupSettings = RollupSettings(),
    review: ReviewSettings = ReviewSettings(),
    task_runner: TaskRunnerKind = "threads",
    max_workers: Annotated[int, Field(ge=1)] = 4,
) -> dict:
    """Build the hierarchical (video / event / clip) manifests and media for one batch of videos."""
    report = ingest_annotations(format, annotations, videos_dir, labels)
    print(f"ingest: {report.n_entries} entries, {len(report.items)} videos found, "
          f"{len(report.quarantine)} quarantined at ingest")
    runner = make_task_runner(task_runner, max_workers)
    items = process_videos.with_options(task_runner=runner)(report.items, workspace, cut_mode, plan, cut)
    items = caption_clips(items, workspace, captioner)
    items = roll_up_texts(items, workspace, rollup)
    items = extract_motion_phrases(items)
    summary = write_run_manifests(workspace, report, items)
    create_table_artifact(summary.rows(), key="build-hivau-summary", description=f"build-hivau run on {workspace}")
    if review.should_push():
        pushed = push_for_review(workspace, review)
        print(f"review: drafts waiting in Label Studio at {pushed.url} (projects {pushed.projects})")
    print(f"done: {summary.videos_processed} videos processed, {summary.videos_quarantined} quarantined, "
          f"{summary.events} events, {summary.clips} clips, {summary.captions} captions, {summary.summaries} summaries, "
          f"{summary.qa_pairs} QA pairs, {summary.motion_phrases} motion phrases; manifests in {workspace}/manifests")
    return summary.model_dump()
