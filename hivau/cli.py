"""The `hivau` command line: build, demo-data, probe, summary, review push/pull, release, export-frames, labelstudio."""

from __future__ import annotations

import functools
import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="hivau: open data engine for video anomaly understanding")
console = Console()


def stoppable(operation: str, prefect: bool = False) -> Callable:
    """A command that Ctrl-C or SIGTERM stops within seconds: it says what it was doing and how to resume, and
    exits 130 (SIGINT) or 143 (SIGTERM). A full disk or an unreachable Label Studio is one line and exit 1. With
    `prefect`, a temporary Prefect server (when PREFECT_API_URL is
    unset) stays up until the stopped run is marked."""

    def wrap(command: Callable) -> Callable:
        @functools.wraps(command)
        def run(*args, **kwargs):
            from hivau.prefect_local import prefect_api
            from hivau.stopping import resume_command, stop_message, stop_on_signals, stopped_by
            from hivau.tasks.review.labelstudio import LabelStudioError
            from hivau.workspace import DiskFullError

            try:
                with stop_on_signals(), (prefect_api() if prefect else nullcontext()):
                    return command(*args, **kwargs)
            except typer.Exit:
                raise
            except (DiskFullError, LabelStudioError) as exc:  # their messages say what failed and how to resume
                print(f"error: {exc}", file=sys.stderr)  # one unwrapped line, not a traceback
                raise typer.Exit(1)
            except BaseException as exc:
                stop = stopped_by(exc)  # `Stopped`, or what a signal turned into where it landed
                if stop is None:
                    raise
                print(stop_message(operation, resume_command(), stop), file=sys.stderr)  # unwrapped: copyable
                raise typer.Exit(stop.exit_code) from None

        return run

    return wrap


@app.command()
@stoppable("build", prefect=True)
def build(
    videos: Path = typer.Option(..., "--videos", help="folder of source videos"),
    workspace: Path = typer.Option(..., "--workspace", help="output folder"),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="annotation file"),
    format: str = typer.Option("hivau", "--format", help="hivau | uca | csv | none"),
    labels: Optional[Path] = typer.Option(None, "--labels", help="event label file (uca format)"),
    cut_mode: str = typer.Option("accurate", "--cut-mode", help="accurate | copy"),
    clip_mode: str = typer.Option("annotated", "--clip-mode", help="annotated | even | fixed"),
    clip_k: int = typer.Option(3, "--clip-k", help="clips per event (even)"),
    clip_length: float = typer.Option(4.0, "--clip-length", help="clip seconds (fixed)"),
    normal_count: int = typer.Option(2, "--normal-count", help="segments sampled per unannotated normal video"),
    normal_length: float = typer.Option(8.0, "--normal-length", help="seconds per sampled normal segment"),
    span_rule: str = typer.Option("max_overlap", "--span-rule", help="UCA span assignment: max_overlap | midpoint | any_overlap"),
    seed: int = typer.Option(0, "--seed"),
    task_runner: str = typer.Option("threads", "--task-runner", help="threads | dask"),
    workers: int = typer.Option(4, "--workers"),
    dask_address: Optional[str] = typer.Option(None, "--dask-address", help="an existing Dask scheduler, tcp://HOST:PORT"),
    shard_size: int = typer.Option(25, "--shard-size", help="videos per task"),
    batch: Optional[str] = typer.Option(None, "--batch", help="this batch's name (default: from the annotation file)"),
    split: str = typer.Option("auto", "--split", help="train | test | auto: the release split of this batch's "
                              "videos (test for an official test file; auto: by a hash of each video id)"),
    lock_wait: float = typer.Option(0.0, "--lock-wait", help="seconds to wait while another operation holds the workspace"),
    captioner: str = typer.Option("provided", "--captioner", help="provided | transformers | openai | hivau"),
    captioner_model: Optional[str] = typer.Option(None, "--captioner-model", help="local folder, hub id or model name"),
    frames_per_clip: int = typer.Option(8, "--frames-per-clip"),
    rollup: str = typer.Option("auto", "--rollup", help="auto | openai | extractive"),
    structured_output: str = typer.Option("json_schema", "--structured-output", help="json_schema | json_text"),
    llm_concurrency: int = typer.Option(16, "--llm-concurrency"),
):
    """Run the build-hivau flow in this process (same parameters as the deployment)."""
    from hivau.flows.build import build_hivau
    from hivau.tasks.build.plan import ClipPolicy, NormalSegmentPolicy, PlanSettings, SpanPolicy
    from hivau.tasks.text.caption import CaptionSettings
    from hivau.tasks.text.llm import LLMSettings
    from hivau.tasks.text.rollup import RollupSettings

    plan = PlanSettings(clips=ClipPolicy(mode=clip_mode, k=clip_k, length_s=clip_length),
                        normal=NormalSegmentPolicy(count=normal_count, length_s=normal_length),
                        spans=SpanPolicy(rule=span_rule), seed=seed)
    summary = build_hivau(videos_dir=str(videos), workspace=str(workspace),
                          annotations=str(annotations) if annotations else None, format=format,
                          labels=str(labels) if labels else None, cut_mode=cut_mode, plan=plan,
                          task_runner=task_runner, max_workers=workers, dask_address=dask_address,
                          shard_size=shard_size, batch=batch, split=split, lock_wait_s=lock_wait,
                          captioner=CaptionSettings(backend=captioner, model=captioner_model,
                                                    frames_per_clip=frames_per_clip),
                          rollup=RollupSettings(backend=rollup, llm=LLMSettings(structured_output=structured_output,
                                                                                 concurrency=llm_concurrency)))
    _print_summary(summary)


@app.command("demo-data")
def demo_data(out: Path = typer.Argument(..., help="output folder"), seed: int = typer.Option(0, "--seed"),
              faults: bool = typer.Option(True, "--faults/--no-faults", help="include two deliberately bad inputs"),
              sets: int = typer.Option(1, "--sets", min=1, help="sets of 8 scenes (more data for training)")):
    """Render the deterministic demo videos and their HIVAU-format annotations."""
    from hivau.demo import build_scenes, write_demo

    with console.status(f"rendering {len(build_scenes(seed)) * sets} demo videos into {out}"):
        annotations = write_demo(out, seed=seed, with_faults=faults, sets=sets)
    console.print(f"wrote {len(annotations)} videos to {out / 'videos'} and {out / 'annotations.json'}")


@app.command()
def probe(video: Path):
    """Probe one video and print what the engine sees (or why it would be quarantined)."""
    from hivau.tasks.build.probe import ProbeError, probe_video

    try:
        info = probe_video(video, video.stem)
    except ProbeError as exc:
        console.print(f"[red]{exc.reason}[/red]: {exc.detail}")
        raise typer.Exit(1)
    data = info.model_dump()
    data["keyframe_times"] = f"{len(info.keyframe_times)} keyframes: {info.keyframe_times[:8]}..."
    console.print_json(json.dumps(data))


@app.command()
def summary(workspace: Path = typer.Option(..., "--workspace")):
    """Print the last run's summary and quarantine table for a workspace."""
    path = workspace / "manifests" / "summary.json"
    if not path.is_file():
        console.print(f"[red]no run summary at {path}[/red]")
        raise typer.Exit(1)
    _print_summary(json.loads(path.read_text()))
    import pyarrow.parquet as pq

    _print_sample(workspace)
    quarantine = pq.read_table(workspace / "manifests" / "quarantine.parquet").to_pylist()
    if quarantine:
        table = Table("item", "level", "stage", "reason", "detail", title="quarantine")
        for q in quarantine:
            table.add_row(q["item_id"], q["level"], q["stage"], q["reason"], q["detail"][:90])
        console.print(table)


def _print_sample(workspace: Path) -> None:
    """One drafted event summary with its split, its 5W2H pairs and motion phrases: what the run wrote."""
    import pyarrow.parquet as pq

    manifests = workspace / "manifests"
    if not (manifests / "qa.parquet").is_file():
        return
    summaries = [s for s in pq.read_table(manifests / "summaries.parquet").to_pylist()
                 if s["level"] == "event" and s["analysis"]]
    if not summaries:
        return
    s = summaries[0]
    gen = s["generator"]
    console.print(f"\n[bold]{s['item_id']}[/bold] event summary ({gen['backend']}, {gen['model']}, {gen['prompt_version']})")
    for field in ("judgement", "description", "analysis"):
        console.print(f"  [cyan]{field}[/cyan]: {s[field]}")
    for q in pq.read_table(manifests / "qa.parquet").to_pylist():
        if q["item_id"] == s["item_id"]:
            console.print(f"  [magenta]{q['qa_type']}[/magenta] {q['question']} -> {q['answer']}")
    phrases = [m["text"] for m in pq.read_table(manifests / "motion_phrases.parquet").to_pylist()
               if m["item_id"] == s["item_id"]]
    console.print(f"  [green]motion phrases[/green]: {'; '.join(phrases)}\n")


def _print_summary(summary: dict) -> None:
    table = Table("metric", "value", title="build-hivau")
    for key, value in summary.items():
        if isinstance(value, dict):
            for k, v in sorted(value.items()):
                table.add_row(f"{key}: {k}", str(v))
        else:
            table.add_row(key, str(value))
    console.print(table)


review_app = typer.Typer(no_args_is_help=True, help="Label Studio review: push drafts, pull annotations")
app.add_typer(review_app, name="review")


def _review_settings(url: Optional[str], batch_size: int, dataset: Optional[str], **more):
    from hivau.tasks.review.projects import ReviewSettings

    return ReviewSettings(enabled="on", url=url, batch_size=batch_size, dataset=dataset, **more)


@review_app.command("push")
@stoppable("review push")
def review_push(workspace: Path = typer.Option(..., "--workspace"),
                url: Optional[str] = typer.Option(None, "--url", help="default: LABEL_STUDIO_URL"),
                dataset: Optional[str] = typer.Option(None, "--dataset", help="project title part (default: workspace name)"),
                batch_size: int = typer.Option(1000, "--batch-size", help="tasks or predictions per bulk request"),
                audit_size: int = typer.Option(50, "--audit-size",
                                               help="new tasks per level put first in the queue as a random audit"),
                annotations_per_task: int = typer.Option(1, "--annotations-per-task",
                                                         help="reviewers per task in new projects"),
                workers: int = typer.Option(2, "--workers", help="review media cut in parallel")):
    """Send the workspace's drafts to Label Studio (key from LABEL_STUDIO_API_KEY); safe to repeat."""
    from hivau.tasks.review.projects import connect
    from hivau.tasks.review.push import push
    from hivau.workspace import Workspace

    settings = _review_settings(url, batch_size, dataset, audit_size=audit_size,
                                annotations_per_task=annotations_per_task, media_workers=workers)
    with connect(settings) as ls:
        report = push(Workspace.at(workspace), ls, settings)
    console.print_json(report.model_dump_json())


@review_app.command("pull")
@stoppable("review pull")
def review_pull(workspace: Path = typer.Option(..., "--workspace"),
                url: Optional[str] = typer.Option(None, "--url", help="default: LABEL_STUDIO_URL"),
                dataset: Optional[str] = typer.Option(None, "--dataset"),
                precedence: Optional[str] = typer.Option(
                    None, "--precedence", help="comma-separated Label Studio user ids, most trusted first: their "
                                               "annotation counts where several reviewed one item (default: latest)")):
    """Fetch every annotation and merge them into the workspace's manifests."""
    from hivau.tasks.manifests import pull_and_merge
    from hivau.tasks.review.merge import ReviewRule
    from hivau.tasks.review.projects import connect
    from hivau.workspace import Workspace

    rule = ReviewRule(rule="precedence", precedence=[int(x) for x in precedence.split(",")]) if precedence \
        else ReviewRule()
    settings = _review_settings(url, 1000, dataset, rule=rule)
    with connect(settings) as ls:
        report = pull_and_merge(Workspace.at(workspace), ls, settings)
    console.print_json(report.model_dump_json())


@app.command()
@stoppable("release")
def release(workspace: Path = typer.Option(..., "--workspace"),
            include_unreviewed: bool = typer.Option(False, "--include-unreviewed",
                                                    help="let unreviewed drafts in, marked auto_draft"),
            test_fraction: float = typer.Option(0.2, "--test-fraction"),
            exclude_flagged: str = typer.Option("error", "--exclude-flagged",
                                                help="error | warn | none: leave out unreviewed drafts with a "
                                                     "failed check at this severity or worse"),
            task_seed: int = typer.Option(0, "--task-seed", help="seed of the verifiable tasks' distractors and "
                                          "answer positions"),
            publish: bool = typer.Option(True, "--publish/--no-publish",
                                         help="emit hivau.release.published to the Prefect API (starts retrain)")):
    """Write the next immutable release folder (parquet, HIVAU / LLaMA-Factory / ms-swift rows, verifiable tasks,
    manifest, card) and announce it."""
    from hivau.tasks.release.publish import ReleaseSettings, announce_release, build_release, verify_release
    from hivau.workspace import Workspace

    path = build_release(Workspace.at(workspace), ReleaseSettings(include_unreviewed=include_unreviewed,
                                                                  test_fraction=test_fraction,
                                                                  exclude_flagged=exclude_flagged,
                                                                  task_seed=task_seed))
    manifest = verify_release(path)
    if publish:
        announce_release(path, manifest)
    counts = manifest["counts"]
    held = manifest.get("held_back_by_check") or {}
    console.print(f"release {manifest['name']} at {path}: {counts['rows']} rows {counts['rows_by_split']}, "
                  f"provenance {counts['rows_by_provenance']}, {sum(counts.get('vau_tasks', {}).values())} "
                  f"verifiable tasks" + (f"; draft rows left out for failed checks: {held}" if held else ""))


@app.command("export-frames")
def export_frames(release: Path = typer.Option(..., "--release", help="a release folder (releases/vNNNN)"),
                  out: Path = typer.Option(..., "--out", help="output folder, outside the release"),
                  model: Optional[Path] = typer.Option(None, "--model", help="a trained hivau model folder: "
                                                       "its anomaly scorer's scores drive ATS"),
                  frames: int = typer.Option(16, "--frames", min=1, help="frames per item"),
                  sampler: str = typer.Option("ats", "--sampler", help="ats | ats_holmes (Holmes-VAU's "
                                              "released ATS) | uniform | topk (events and videos; clips are always "
                                              "uniform; without --model all are uniform)"),
                  tau: float = typer.Option(0.1, "--tau", help="ATS: the score floor that keeps frames everywhere"),
                  short_side: Optional[int] = typer.Option(None, "--short-side", help="scale frames down to this"),
                  device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (the scorer)")):
    """Write each item's frames as JPEG files and LLaMA-Factory / ms-swift rows whose videos are those lists."""
    from hivau.models.sampler import SAMPLER_NAMES
    from hivau.progress import progress_bar
    from hivau.schemas.records import read_release_rows
    from hivau.tasks.release.frame_export import export_frames as run_export
    from hivau.tasks.release.frame_export import items_of, model_scores

    if sampler not in SAMPLER_NAMES:
        raise typer.BadParameter(f"unknown sampler {sampler!r}: use {', '.join(SAMPLER_NAMES)}", param_hint="--sampler")
    if model is None and sampler != "uniform":
        console.print(f"no --model: events and videos take uniform frames, not {sampler}")
    scores = model_scores(model, device) if model is not None else None
    rows = [r for split in ("train", "test") for r in read_release_rows(release, split, missing_ok=True)]
    n_items = len(items_of(rows))
    try:
        with progress_bar("frames", n_items) as advance:
            summary = run_export(release, out, n=frames, sampler=sampler, scores=scores, tau=tau,
                                 short_side=short_side, model=str(model) if model else None, advance=advance)
    except (FileNotFoundError, ValueError) as exc:  # not a release, or an output folder inside it
        console.print(f"[red]{exc}")
        raise typer.Exit(1)
    console.print_json(json.dumps(summary))
    if summary["rejects"]:
        console.print(f"{summary['rejects']} media failed to decode; see {out / 'rejects.jsonl'}")


@app.command()
@stoppable("propose", prefect=True)
def propose(workspace: Path = typer.Option(..., "--workspace"),
            model: Optional[Path] = typer.Option(None, "--model", help="model folder or models folder "
                                                                          "(default: WORKSPACE/models)"),
            threshold: float = typer.Option(0.5, "--threshold"),
            push: bool = typer.Option(True, "--push/--no-push", help="send to Label Studio when it is configured"),
            url: Optional[str] = typer.Option(None, "--url", help="Label Studio URL (default $LABEL_STUDIO_URL)")):
    """Let the trained scorer propose anomalous spans on unannotated videos (and send them for review)."""
    from hivau.flows.propose import ProposalSettings, propose_events_flow
    from hivau.tasks.review.projects import ReviewSettings

    out = propose_events_flow(workspace=str(workspace), model=str(model) if model else None,
                              settings=ProposalSettings(threshold=threshold),
                              review=ReviewSettings(enabled="auto" if push else "off", url=url))
    for video_id, spans in out["spans"].items():
        console.print(f"{video_id}: " + (", ".join(f"{s['start_s']:.1f}-{s['end_s']:.1f}s ({s['score']:.2f})"
                                                   for s in spans) or "nothing above the threshold"))


@app.command("labelstudio")
def labelstudio(state: Path = typer.Option(..., "--state", help="folder for the database and credentials"),
                document_root: Path = typer.Option(..., "--document-root", help="media folder it may serve"),
                port: int = typer.Option(8080, "--port")):
    """Run a local Label Studio in the foreground (its own virtual environment); prints the account once."""
    import signal
    import sys

    from hivau import labelstudio_local as lsl

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that `finally` stops the server too
    _, generated = lsl.credentials(state.resolve())
    proc, creds = lsl.start(state, port, document_root)
    url = f"http://127.0.0.1:{port}"
    if generated:
        console.print(f"Label Studio account (shown once; kept in {state / 'credentials.json'}):\n"
                      f"  email {creds['email']}  password {creds['password']}")
    try:
        lsl.wait_healthy(url, proc)
        console.print(f"Label Studio is up at {url}")
        proc.wait()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except Exception:
            proc.kill()


if __name__ == "__main__":
    app()
