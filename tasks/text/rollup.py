"""Roll-up: clip captions into event summaries, event summaries into a video summary, 5W2H pairs, and a reasoning
chain for each event and the video.

Plain async functions over one `VideoItem`; the backend (an LLM through `LLMClient`, or the offline
`extractive` one) only turns a `TextContext` into a validated `SummaryOut` / `QAOut` / `ChainOut`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Literal, Optional

from pydantic import BaseModel, Field

from hivau.prompts import load_prompt
from hivau.schemas import reasons
from hivau.schemas.chains import format_chain
from hivau.schemas.item import RepairRecord, VideoItem
from hivau.schemas.records import (
    CheckRecord,
    Generator,
    Level,
    QAPair,
    QuarantineRecord,
    ReasoningChain,
    Summary,
)
from hivau.tasks.text.checks import Evidence, Flag, run_checks
from hivau.tasks.text.contracts import (  # noqa: F401  (re-exported: the backends' types are part of this stage)
    QA_TYPES,
    ChainOut,
    JudgeOut,
    QAItemOut,
    QAOut,
    RollupBackend,
    SummaryOut,
    TextContext,
    check_chain,
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
from hivau.tasks.text.nlp import english, parse_many
from hivau.tasks.text.verify import evidence_of, item_texts


class RollupSettings(BaseModel):
    backend: Literal["auto", "openai", "extractive"] = Field(
        "auto", description="auto: the LLM when one is configured (env or llm.*), else extractive")
    llm: LLMSettings = LLMSettings()
    judge: bool = Field(False, description="also have the LLM score each drafted summary (faithfulness, label "
                                           "consistency, completeness; keep / review / discard): a review verdict "
                                           "is a warning flag, discard an error")
    repair_attempts: int = Field(1, ge=0, le=5, description="times an LLM draft that fails an error-level draft "
                                                            "check is asked again, with the checks' evidence")
    keep_provided: bool = Field(True, description="keep human summaries from the annotations instead of drafting")
    qa_levels: list[Literal["event", "video"]] = Field(default_factory=lambda: ["event", "video"])
    chains: bool = Field(True, description="draft a reasoning chain (perception, cognition, conclusion) for each "
                                           "event and video, for reasoning SFT and the verifiable tasks' <think>")


class LLMBackend:
    """Prompts from `prompts/`, answers through the OpenAI-compatible client."""

    name = "openai"

    def __init__(self, client: LLMClient):
        self.client = client

    def generator(self, task: str) -> Generator:
        return Generator(backend=self.name, model=self.client.endpoint.model, prompt_version=load_prompt(task).tag)

    async def summarize(self, ctx: TextContext) -> SummaryOut:
        messages, tag = self.summary_messages(ctx)
        return await self.client.complete(messages, SummaryOut, tag, check_summary(ctx.is_anomaly))

    def summary_messages(self, ctx: TextContext) -> tuple[list[dict], str]:
        if ctx.level == "event":
            prompt = load_prompt("event_summary")
            return prompt.messages(ctx.variant, start_s=f"{ctx.start_s:.1f}", end_s=f"{ctx.end_s:.1f}",
                                   labels=ctx.label_text, captions=ctx.timed_lines()), prompt.tag
        prompt = load_prompt("video_summary")
        return prompt.messages(ctx.variant, duration_s=f"{ctx.end_s:.1f}", labels=ctx.label_text,
                               events=ctx.timed_lines()), prompt.tag

    def qa_messages(self, ctx: TextContext) -> tuple[list[dict], str]:
        prompt = load_prompt("qa_5w2h")
        return prompt.messages(ctx.variant, level=ctx.level, start_s=f"{ctx.start_s:.1f}", end_s=f"{ctx.end_s:.1f}",
                               labels=ctx.label_text, context=ctx.timed_lines()), prompt.tag

    async def qa(self, ctx: TextContext) -> QAOut:
        messages, tag = self.qa_messages(ctx)
        return await self.client.complete(messages, QAOut, tag, check_qa)

    def chain_messages(self, ctx: TextContext) -> tuple[list[dict], str]:
        prompt = load_prompt("reasoning_chain")
        return prompt.messages(ctx.variant, level=ctx.level, start_s=f"{ctx.start_s:.1f}", end_s=f"{ctx.end_s:.1f}",
                               labels=ctx.label_text, context=ctx.timed_lines(),
                               description=ctx.description or "(none)", analysis=ctx.analysis or "(none)"), prompt.tag

    async def reason(self, ctx: TextContext) -> ChainOut:
        messages, tag = self.chain_messages(ctx)
        return await self.client.complete(messages, ChainOut, tag, check_chain(ctx.is_anomaly))

    def _request(self, ctx: TextContext, kind: str):
        """The messages, tag, output type and validation of one kind of request (summary, qa, chain)."""
        if kind == "summary":
            return (*self.summary_messages(ctx), SummaryOut, check_summary(ctx.is_anomaly))
        if kind == "chain":
            return (*self.chain_messages(ctx), ChainOut, check_chain(ctx.is_anomaly))
        return (*self.qa_messages(ctx), QAOut, check_qa)

    async def judge(self, ctx: TextContext, draft: SummaryOut) -> JudgeOut:
        prompt = load_prompt("judge")
        messages = prompt.messages(level=ctx.level, start_s=f"{ctx.start_s:.1f}", end_s=f"{ctx.end_s:.1f}",
                                   labels=ctx.label_text, context=ctx.timed_lines(), draft=draft.model_dump_json())
        return await self.client.complete(messages, JudgeOut, prompt.tag)

    async def repair(self, ctx: TextContext, kind: str, draft: BaseModel, failures: list[Flag], attempt: int):
        """Ask again: the original request, the failed draft as the model's answer, then the failed checks with
        their evidence. Cached like every request (the failures are part of the key)."""
        messages, tag, output, check = self._request(ctx, kind)
        repair = load_prompt("repair")
        listed = "\n".join(f"- {f.check} in {f.target}: {f.evidence}" for f in failures)
        follow_up = repair.messages(failures=listed, labels=ctx.label_text)[1]
        messages = [*messages, {"role": "assistant", "content": draft.model_dump_json()}, follow_up]
        return await self.client.complete(messages, output, f"{tag}+{repair.tag}#{attempt}", check)


# ---------------------------------------------------------------- one video
ROLLUP_STAGES = ("summarize", "qa", "reason")  # the quarantine stages of this step's failures


def _failure(item: VideoItem, item_id: str, level: Level, stage: str, reason: str, detail: str) -> QuarantineRecord:
    return item.failure(item_id, level, stage, reason, detail)


def within(start_s: float, end_s: float, span_start_s: float, span_end_s: float, text: str):
    """A clip's timed text inside its event's span (an annotation's clip may run past its event, noted at planning;
    the event's texts speak of the event), or None when nothing of it is inside."""
    start, end = max(start_s, span_start_s), min(end_s, span_end_s)
    return (start, end, text) if end > start else None


def event_contexts(item: VideoItem) -> list[TextContext]:
    clips_of: dict[str, list] = {}
    for clip in item.planned_clips:
        clips_of.setdefault(clip.event_id, []).append(clip)
    caption_of = {c.item_id: c.text for c in item.captions if c.level == "clip" and c.provenance != "rejected"}
    contexts = []
    for event in item.planned_events:
        clips = sorted(clips_of.get(event.event_id, []), key=lambda c: c.start_s)
        lines = [line for c in clips if caption_of.get(c.clip_id)
                 and (line := within(c.start_s, c.end_s, event.start_s, event.end_s, caption_of[c.clip_id]))]
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
    if isinstance(backend, ExtractiveBackend):  # it parses every caption: in one batch, before the first summary
        parse_many([c.text for c in item.captions])
    events = event_contexts(item)
    evidence = evidence_of(item)
    repairs: list[RepairRecord] = []
    can_repair = settings.repair_attempts > 0 and hasattr(backend, "repair")

    async def repaired(ctx: TextContext, kind: str, out):
        """An LLM draft that fails an error-level check is asked again, up to `repair_attempts` times; the
        attempt with the fewest error flags is kept (the first answer on a tie)."""
        if out is None or not can_repair or ctx.item_id not in evidence:
            return out
        # the checks parse text (CPU): off the event loop, so the other items' requests keep going meanwhile
        errors = await asyncio.to_thread(_errors, ctx, kind, out, evidence[ctx.item_id])
        if not errors:
            return out
        best, best_errors, first = out, errors, sorted({f.check for f in errors})
        attempts = 0
        for attempt in range(1, settings.repair_attempts + 1):
            attempts = attempt
            try:
                again = await backend.repair(ctx, kind, best, best_errors, attempt)
            except LLMError:
                break  # the draft we have stays, with its flags; the failed request is counted in usage
            now = await asyncio.to_thread(_errors, ctx, kind, again, evidence[ctx.item_id])
            if len(now) < len(best_errors):
                best, best_errors = again, now
            if not best_errors:
                break
        repairs.append(RepairRecord(item_id=ctx.item_id, level=ctx.level, target=kind, attempts=attempts,
                                    failed_before=first, failed_after=sorted({f.check for f in best_errors})))
        return best

    judged: list[CheckRecord] = []

    chains: dict[str, ReasoningChain] = {}

    async def reason(ctx: TextContext, summary: Optional[Summary]) -> None:
        """The item's reasoning chain, drafted with its summary's description and analysis in view."""
        if not settings.chains or not hasattr(backend, "reason") or not ctx.lines:
            return  # no texts: the summary's failure already says so
        ctx = replace(ctx, description=summary.description if summary else None,
                      analysis=summary.analysis if summary else None)
        out = await repaired(ctx, "chain", await _attempt(backend.reason, item, ctx, "reason", failures))
        if out is not None:
            chains[ctx.item_id] = ReasoningChain(item_id=ctx.item_id, level=ctx.level, video_id=ctx.video_id,
                                                 text=format_chain(out.chain()), provenance="auto_draft",
                                                 generator=backend.generator("reasoning_chain"))

    async def summarize(ctx: TextContext) -> Optional[Summary]:
        if ctx.item_id in keep:
            summary = keep[ctx.item_id]
        else:
            out = await repaired(ctx, "summary", await _attempt(backend.summarize, item, ctx, "summarize", failures))
            summary = _summary(ctx, out, backend.generator(f"{ctx.level}_summary")) if out else None
            if summary is not None and settings.judge and hasattr(backend, "judge"):
                judged.extend(await _judge(backend, ctx, out, summary))
        await reason(ctx, summary)
        return summary

    async def ask(ctx: TextContext) -> list[QAPair]:
        if ctx.level not in settings.qa_levels:
            return []
        out = await repaired(ctx, "qa", await _attempt(backend.qa, item, ctx, "qa", failures))
        generator = backend.generator("qa_5w2h")
        return [QAPair(item_id=ctx.item_id, level=ctx.level, video_id=ctx.video_id, qa_type=p.qa_type,
                       question=p.question.strip(), answer=p.answer.strip(), provenance="auto_draft",
                       generator=generator) for p in (out.pairs if out else [])]

    event_results = await asyncio.gather(*(summarize(c) for c in events), *(ask(c) for c in events))
    event_summaries = {s.item_id: s for s in event_results[:len(events)] if s is not None}
    video = video_context(item, event_summaries)
    if item.video_id in evidence:  # the video summary is checked against the event summaries it is rolled up from
        evidence[item.video_id].summaries = [t for s in event_summaries.values() for t in (s.text, s.description) if t]
    video_summary, video_qa = await asyncio.gather(summarize(video), ask(video))

    summaries = [s for s in [*event_summaries.values(), video_summary] if s is not None]
    drafted = {s.item_id for s in summaries}
    item.summaries = summaries + [s for s in item.summaries if s.item_id not in drafted]
    item.qa = [p for pairs in event_results[len(events):] for p in pairs] + video_qa
    item.chains = [chains[c.item_id] for c in [*events, video] if c.item_id in chains]
    item.quarantine = [q for q in item.quarantine if q.stage not in ROLLUP_STAGES] + failures
    item.repairs = repairs
    drafted_ids = {s.item_id for s in item.summaries if s.provenance == "auto_draft"}
    item.checks = [c for c in item.checks if not (c.check == "llm_judge" and c.item_id in drafted_ids)] + judged
    item.advance("drafted")
    return item


async def _judge(backend, ctx: TextContext, out: SummaryOut, summary: Summary) -> list[CheckRecord]:
    """The LLM judge's verdict on a drafted summary, as an `llm_judge` flag (none when it says keep); a judge
    request that fails leaves the draft unjudged (the failure is in the usage counts)."""
    try:
        verdict = await backend.judge(ctx, out)
    except LLMError:
        return []
    if verdict.verdict == "keep":
        return []
    scores = (verdict.faithfulness, verdict.label_consistency, verdict.completeness)
    return [CheckRecord(item_id=ctx.item_id, level=ctx.level, video_id=ctx.video_id, target="summary",
                        check="llm_judge", severity="error" if verdict.verdict == "discard" else "warn",
                        score=float(min(scores)), text_provenance="auto_draft", generator=summary.generator,
                        evidence=f"{verdict.verdict}: faithfulness {scores[0]}, label {scores[1]}, completeness "
                                 f"{scores[2]}: {verdict.reason}"[:500])]


def _errors(ctx: TextContext, kind: str, out, evidence: Evidence) -> list[Flag]:
    """The error-level flags of one drafted answer (a summary with its split, the 5W2H pairs, or a chain)."""
    if kind == "summary":
        summary = Summary(item_id=ctx.item_id, level=ctx.level, video_id=ctx.video_id, text=out.summary,
                          judgement=out.judgement, description=out.description, analysis=out.analysis,
                          provenance="auto_draft", generator=Generator(backend="openai"))
        texts = item_texts(ctx.item_id, ctx.level, None, summary, [])
    elif kind == "chain":
        chain = ReasoningChain(item_id=ctx.item_id, level=ctx.level, video_id=ctx.video_id,
                               text=format_chain(out.chain()), provenance="auto_draft",
                               generator=Generator(backend="openai"))
        texts = item_texts(ctx.item_id, ctx.level, None, None, [], chain)
    else:
        pairs = [QAPair(item_id=ctx.item_id, level=ctx.level, video_id=ctx.video_id, qa_type=p.qa_type,
                        question=p.question, answer=p.answer, provenance="auto_draft",
                        generator=Generator(backend="openai")) for p in out.pairs]
        texts = item_texts(ctx.item_id, ctx.level, None, None, pairs)
    return [f for f in run_checks(texts, evidence) if f.severity == "error"]


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
    errors: list[BaseException] = []

    async def one(index: int, item: VideoItem) -> None:
        try:
            done = await rollup_item(item, backend, settings)
            if on_done:
                on_done(done)
            if keep:
                results[index] = done
        except Exception as exc:  # a bug, not a request failure (those are records): kept, or the video is lost
            errors.append(exc)
        finally:
            slots.release()

    for index, item in enumerate(items):
        await slots.acquire()
        if errors:
            break  # no new videos after a failure; the ones in flight finish (and are saved) first
        task = asyncio.create_task(one(index, item))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)
    if errors:
        raise errors[0]
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
        failed += sum(1 for q in item.quarantine if q.stage in ROLLUP_STAGES)
        if on_done:
            on_done(item)

    if name == "extractive":
        out = asyncio.run(_rollup_all(items, ExtractiveBackend(), settings, done, keep, window))
        return RollupRun(out, name, None, usage, note)

    async def with_client() -> list[VideoItem]:
        async with LLMClient(endpoint, settings.llm, ResponseCache(cache_dir), usage) as client:
            return await _rollup_all(items, LLMBackend(client), settings, done, keep, window)

    if settings.repair_attempts:
        # the draft checks parse in worker threads; spaCy's first import there pulls in httpx, which the openai
        # client looks up on every answer: half-imported, it crashed a request. So it is loaded here, first
        english()
    out = asyncio.run(with_client())
    usage.failed_items = failed
    return RollupRun(out, name, endpoint.model, usage, note)
