"""Roll-up: clip captions into event summaries, event summaries into a video summary, and 5W2H pairs.

Plain async functions over one `VideoItem`; the backend (an LLM through `LLMClient`, or the offline
`extractive` one) only turns a `TextContext` into a validated `SummaryOut` / `QAOut`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal, Optional

from pydantic import BaseModel, Field

from hivau.prompts import load_prompt
from hivau.schemas import reasons
from hivau.schemas.item import VideoItem
from hivau.schemas.records import Generator, Level, QAPair, QuarantineRecord, Summary
from hivau.tasks.text.contracts import (  # noqa: F401  (re-exported: the backends' types are part of this stage)
    QA_TYPES,
    QAItemOut,
    QAOut,
    RollupBackend,
    SummaryOut,
    TextContext,
    check_qa,
    check_summary,
)
from hivau.tasks.text.extractive import ExtractiveBackend
from hivau.tasks.text.llm import (
    Endpoint,
    LLMClient,
    LLMConfigError,
    LLMError,
    LLMSettings,
    ResponseCache,
    Usage,
    resolve_endpoint,
)


class RollupSettings(BaseModel):
    backend: Literal["auto", "openai", "extractive"] = Field(
        "auto", description="auto: the LLM when one is configured (env or llm.*), else extractive")
    llm: LLMSettings = LLMSettings()
    keep_provided: bool = Field(True, description="keep human summaries from the annotations instead of drafting")
    qa_levels: list[Literal["event", "video"]] = Field(default_factory=lambda: ["event", "video"])


class LLMBackend:
    """Prompts from `prompts/`, answers through the OpenAI-compatible client."""

    name = "openai"

    def __init__(self, client: LLMClient):
        self.client = client

    def generator(self, task: str) -> Generator:
        return Generator(backend=self.name, model=self.client.endpoint.model, prompt_version=load_prompt(task).tag)

    async def summarize(self, ctx: TextContext) -> SummaryOut:
        if ctx.level == "event":
            prompt = load_prompt("event_summary")
            messages = prompt.messages(ctx.variant, start_s=f"{ctx.start_s:.1f}", end_s=f"{ctx.end_s:.1f}",
                                       labels=ctx.label_text, captions=ctx.timed_lines())
        else:
            prompt = load_prompt("video_summary")
            messages = prompt.messages(ctx.variant, duration_s=f"{ctx.end_s:.1f}", labels=ctx.label_text,
                                       events=ctx.timed_lines())
        return await self.client.complete(messages, SummaryOut, prompt.tag, check_summary(ctx.is_anomaly))

    async def qa(self, ctx: TextContext) -> QAOut:
        prompt = load_prompt("qa_5w2h")
        messages = prompt.messages(ctx.variant, level=ctx.level, start_s=f"{ctx.start_s:.1f}",
                                   end_s=f"{ctx.end_s:.1f}", labels=ctx.label_text, context=ctx.timed_lines())
        return await self.client.complete(messages, QAOut, prompt.tag, check_qa)


# ---------------------------------------------------------------- one video
def _failure(item: VideoItem, item_id: str, level: Level, stage: str, reason: str, detail: str) -> QuarantineRecord:
    return item.failure(item_id, level, stage, reason, detail)


def event_contexts(item: VideoItem) -> list[TextContext]:
    clips_of: dict[str, list] = {}
    for clip in item.planned_clips:
        clips_of.setdefault(clip.event_id, []).append(clip)
    caption_of = {c.item_id: c.text for c in item.captions if c.level == "clip" and c.provenance != "rejected"}
    contexts = []
    for event in item.planned_events:
        clips = sorted(clips_of.get(event.event_id, []), key=lambda c: c.start_s)
        lines = [(c.start_s, c.end_s, caption_of[c.clip_id]) for c in clips if caption_of.get(c.clip_id)]
        contexts.append(TextContext(event.event_id, "event", item.video_id, event.labels, event.is_anomaly,
                                    event.start_s, event.end_s, lines))
    return contexts


def video_context(item: VideoItem, event_summaries: dict[str, Summary]) -> TextContext:
    lines, facts = [], []
    for event in sorted(item.planned_events, key=lambda e: e.start_s):
        summary = event_summaries.get(event.event_id)
        if summary and summary.text.strip():
            tag = ", ".join(event.labels) if event.is_anomaly else "normal"
            lines.append((event.start_s, event.end_s, f"({tag}) {summary.text.strip()}"))
            facts.append((event.start_s, event.end_s, (summary.description or summary.text).strip()))
    duration = item.probe.duration_s if item.probe else max((e.end_s for e in item.planned_events), default=0.0)
    anomalous_spans = [(e.start_s, e.end_s) for e in item.planned_events if e.is_anomaly]
    return TextContext(item.video_id, "video", item.video_id, item.labels, item.is_anomaly, 0.0, duration, lines,
                       facts, anomalous_spans)


def _summary(ctx: TextContext, out: SummaryOut, generator: Generator) -> Summary:
    return Summary(item_id=ctx.item_id, level=ctx.level, video_id=ctx.video_id, text=out.summary.strip(),
                   judgement=out.judgement.strip(), description=out.description.strip(),
                   analysis=out.analysis.strip() if out.analysis else None,
                   provenance="auto_draft", generator=generator)


async def _attempt(call, item: VideoItem, ctx: TextContext, stage: str, failures: list):
    """`await call(ctx)`; a failure becomes a reasoned record and None, never a placeholder text."""
    if not ctx.lines:
        failures.append(_failure(item, ctx.item_id, ctx.level, stage, reasons.NO_INPUT_TEXT,
                                 f"no {'clip captions' if ctx.level == 'event' else 'event summaries'} to work from"))
        return None
    try:
        return await call(ctx)
    except LLMError as exc:
        failures.append(_failure(item, ctx.item_id, ctx.level, stage, exc.reason, exc.detail))
        return None


async def rollup_item(item: VideoItem, backend: RollupBackend, settings: RollupSettings) -> VideoItem:
    """Draft the missing event and video summaries and the 5W2H pairs of one video."""
    item = item.model_copy(deep=True)
    if item.status == "quarantined":
        return item
    failures: list[QuarantineRecord] = []
    # Human summaries from the annotations stay (unless told otherwise); drafts are always derived again,
    # from the cache when their inputs did not change, so they follow edits to the captions.
    keep = {s.item_id: s for s in item.summaries
            if settings.keep_provided and s.provenance == "human" and s.text.strip()}
    events = event_contexts(item)

    async def summarize(ctx: TextContext) -> Optional[Summary]:
        if ctx.item_id in keep:
            return keep[ctx.item_id]
        out = await _attempt(backend.summarize, item, ctx, "summarize", failures)
        return _summary(ctx, out, backend.generator(f"{ctx.level}_summary")) if out else None

    async def ask(ctx: TextContext) -> list[QAPair]:
        if ctx.level not in settings.qa_levels:
            return []
        out = await _attempt(backend.qa, item, ctx, "qa", failures)
        generator = backend.generator("qa_5w2h")
        return [QAPair(item_id=ctx.item_id, level=ctx.level, video_id=ctx.video_id, qa_type=p.qa_type,
                       question=p.question.strip(), answer=p.answer.strip(), provenance="auto_draft",
                       generator=generator) for p in (out.pairs if out else [])]

    event_results = await asyncio.gather(*(summarize(c) for c in events), *(ask(c) for c in events))
    event_summaries = {s.item_id: s for s in event_results[:len(events)] if s is not None}
    video = video_context(item, event_summaries)
    video_summary, video_qa = await asyncio.gather(summarize(video), ask(video))

    summaries = [s for s in [*event_summaries.values(), video_summary] if s is not None]
    drafted = {s.item_id for s in summaries}
    item.summaries = summaries + [s for s in item.summaries if s.item_id not in drafted]
    item.qa = [p for pairs in event_results[len(events):] for p in pairs] + video_qa
    item.quarantine = [q for q in item.quarantine if q.stage not in ("summarize", "qa")] + failures
    item.advance("drafted")
    return item


# ---------------------------------------------------------------- all videos of a run
@dataclass
class RollupRun:
    items: list[VideoItem]
    backend: str
    model: Optional[str]
    usage: Usage
    note: str  # why this backend, for the run log


def choose_backend(settings: RollupSettings) -> tuple[str, Optional[Endpoint], str]:
    """('openai', endpoint, why) when an LLM is configured (or demanded), else ('extractive', None, why)."""
    if settings.backend == "extractive":
        return "extractive", None, "roll-up backend: extractive (chosen in settings)"
    endpoint = resolve_endpoint(settings.llm)
    if endpoint is None:
        if settings.backend == "openai":
            raise LLMConfigError("rollup.backend=openai but no endpoint: set OPENAI_BASE_URL and/or OPENAI_API_KEY "
                                 "and HIVAU_LLM_MODEL (or the llm.* settings)")
        return "extractive", None, ("roll-up backend: extractive, offline (no LLM configured: set OPENAI_BASE_URL "
                                    "or OPENAI_API_KEY, and HIVAU_LLM_MODEL, to use one)")
    where = endpoint.base_url or "api.openai.com"
    return "openai", endpoint, f"roll-up backend: openai-compatible LLM {endpoint.model} at {where}"


async def _rollup_all(items: Iterable[VideoItem], backend: RollupBackend, settings: RollupSettings,
                      on_done: Optional[Callable[[VideoItem], None]], keep: bool, window: int) -> list[VideoItem]:
    """Roll up videos as they are read, at most `window` at a time: requests stay in flight across video
    boundaries, and a store of thousands of videos is never in memory whole."""
    slots = asyncio.Semaphore(window)
    results: dict[int, VideoItem] = {}
    running: set[asyncio.Task] = set()

    async def one(index: int, item: VideoItem) -> None:
        try:
            done = await rollup_item(item, backend, settings)
            if on_done:
                on_done(done)
            if keep:
                results[index] = done
        finally:
            slots.release()

    for index, item in enumerate(items):
        await slots.acquire()
        task = asyncio.create_task(one(index, item))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)
    return [results[i] for i in sorted(results)]


def run_rollup(items: Iterable[VideoItem], cache_dir: Optional[Path], settings: RollupSettings,
               on_done: Optional[Callable[[VideoItem], None]] = None, keep: bool = True,
               window: Optional[int] = None) -> RollupRun:
    """Roll up every video concurrently (requests capped by llm.concurrency, videos in flight by `window`,
    default 4x that); answers are cached on disk. `keep=False` returns no items (`on_done` has them)."""
    name, endpoint, note = choose_backend(settings)
    usage = Usage()
    window = window or max(4 * settings.llm.concurrency, 8)
    failed = 0

    def done(item: VideoItem) -> None:
        nonlocal failed
        failed += sum(1 for q in item.quarantine if q.stage in ("summarize", "qa"))
        if on_done:
            on_done(item)

    if name == "extractive":
        out = asyncio.run(_rollup_all(items, ExtractiveBackend(), settings, done, keep, window))
        return RollupRun(out, name, None, usage, note)

    async def with_client() -> list[VideoItem]:
        async with LLMClient(endpoint, settings.llm, ResponseCache(cache_dir), usage) as client:
            return await _rollup_all(items, LLMBackend(client), settings, done, keep, window)

    out = asyncio.run(with_client())
    usage.failed_items = failed
    return RollupRun(out, name, endpoint.model, usage, note)
