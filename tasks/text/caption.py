"""Clip captioners behind one interface: `provided` (the annotations' own), `transformers`, `openai`, and
`hivau` (a video LLM that hivau-train fine-tuned on an earlier release)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Literal, Optional, Protocol, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hivau.models.data import FrameStore
from hivau.models.io import load_model
from hivau.models.registry import resolve_model
from hivau.prompts import load_prompt
from hivau.prompts.questions import TEMPLATES
from hivau.schemas import reasons
from hivau.schemas.item import VideoItem
from hivau.schemas.records import Caption, CheckRecord, Generator, QuarantineRecord
from hivau.tasks.build.frames import sample_frames
from hivau.tasks.text.contracts import JudgeOut
from hivau.tasks.text.llm import LLMClient, LLMError, LLMSettings, ResponseCache, Usage, resolve_endpoint
from hivau.workspace import Workspace, atomic_write_json


class CaptionSettings(BaseModel):
    backend: Literal["provided", "transformers", "openai", "hivau"] = Field(
        "provided", description="provided: the annotations' captions; transformers: a local VLM; openai: a VLM "
                                "server; hivau: a model trained by hivau-train")
    model: Optional[str] = Field(None, description="transformers: local folder or hub id; openai: model name "
                                                   "(default $HIVAU_VLM_MODEL); hivau: a model folder, or a "
                                                   "models folder whose registry names the current model")
    frames_per_clip: int = Field(8, ge=1, le=64)
    frame_short_side: int = Field(336, ge=16, description="frames are decoded at this shorter side")
    batch_size: int = Field(4, ge=1, description="clips per forward pass (transformers)")
    max_new_tokens: int = Field(96, ge=4)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    recaption_provided: bool = Field(False, description="also caption clips that have a human caption")
    jpeg_quality: int = Field(85, ge=10, le=100, description="openai: quality of the frames sent as images")
    llm: LLMSettings = Field(default_factory=LLMSettings, description="openai: endpoint, retries, concurrency")
    judge: bool = Field(False, description="openai: also have the VLM check each machine caption against the clip's "
                                           "frames (keep / review / discard); review is a warning flag, discard an "
                                           "error")


@dataclass
class ClipFrames:
    clip_id: str
    start_s: float
    end_s: float
    frames: np.ndarray  # (N, H, W, 3) RGB uint8
    times_s: list[float]  # in the source video's time
    media_path: Optional[str] = None  # the clip file, for backends that sample their own frames


@dataclass
class CaptionFailure:
    reason: str
    detail: str


CaptionResult = Union[str, CaptionFailure]


class Captioner(Protocol):
    generator: Generator

    def caption(self, clips: list[ClipFrames]) -> list[CaptionResult]: ...


# ---------------------------------------------------------------- transformers
def pick_device_dtype(device: str, dtype: str):
    """CUDA when present (bf16 where supported, else fp16); CPU in float32."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        if device == "cuda":
            return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return device, torch.float32
    return device, getattr(torch, dtype)


class TransformersCaptioner:
    """A Hugging Face image-text-to-text model (Qwen2-VL, LLaVA, ...) given a clip's frames as images."""

    def __init__(self, model_ref: str, settings: CaptionSettings):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.settings = settings
        self.device, self.dtype = pick_device_dtype(settings.device, settings.dtype)
        self.processor = AutoProcessor.from_pretrained(model_ref)
        self.processor.tokenizer.padding_side = "left"  # decoder-only batches generate from the right edge
        self.model = AutoModelForImageTextToText.from_pretrained(model_ref, dtype=self.dtype).to(self.device).eval()
        self.prompt = load_prompt("clip_caption")
        self.generator = Generator(backend="transformers", model=model_ref, prompt_version=self.prompt.tag)
        self._torch = torch

    def _conversation(self, clip: ClipFrames) -> list[dict]:
        system, user = self.prompt.messages(n_frames=len(clip.frames), start_s=f"{clip.start_s:.1f}",
                                            end_s=f"{clip.end_s:.1f}")
        content = [{"type": "image"} for _ in clip.frames] + [{"type": "text", "text": user["content"]}]
        return [{"role": "system", "content": [{"type": "text", "text": system["content"]}]},
                {"role": "user", "content": content}]

    def _generate(self, clips: list[ClipFrames]) -> list[str]:
        from PIL import Image

        texts = [self.processor.apply_chat_template(self._conversation(c), add_generation_prompt=True, tokenize=False)
                 for c in clips]
        images = [[Image.fromarray(f) for f in c.frames] for c in clips]
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True).to(self.device)
        with self._torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.settings.max_new_tokens, do_sample=False)
        return self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    def caption(self, clips: list[ClipFrames]) -> list[CaptionResult]:
        results: list[CaptionResult] = []
        for start in range(0, len(clips), self.settings.batch_size):
            batch = clips[start:start + self.settings.batch_size]
            try:
                texts = self._generate(batch)
            except (RuntimeError, ValueError) as exc:  # e.g. out of memory, a frame the processor rejects
                results += [CaptionFailure(reasons.CAPTION_FAILED, f"{type(exc).__name__}: {exc}"[:300])] * len(batch)
                continue
            results += [t.strip() or CaptionFailure(reasons.CAPTION_FAILED, "the model generated no text")
                        for t in texts]
        return results


# ---------------------------------------------------------------- openai-compatible VLM
class CaptionOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    caption: str


def _check_caption(out: CaptionOut) -> CaptionOut:
    if not out.caption.strip():
        raise ValueError("empty caption")
    return out


def jpeg_data_url(frame: np.ndarray, quality: int) -> str:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode a frame as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


class OpenAICaptioner:
    """An OpenAI-compatible vision chat endpoint (for example vLLM serving a VLM); frames go as JPEG images."""

    def __init__(self, settings: CaptionSettings, cache: ResponseCache, usage: Optional[Usage] = None):
        import os

        llm = settings.llm.model_copy(update={"model": settings.model or settings.llm.model
                                              or os.environ.get("HIVAU_VLM_MODEL")})
        endpoint = resolve_endpoint(llm)
        if endpoint is None:
            raise ValueError("the openai captioner needs an endpoint: set OPENAI_BASE_URL / OPENAI_API_KEY and a "
                             "model (captioner.model or $HIVAU_VLM_MODEL)")
        self.settings, self.llm, self.endpoint, self.cache = settings, llm, endpoint, cache
        self.usage = usage or Usage()
        self.prompt = load_prompt("clip_caption")
        self.generator = Generator(backend="openai", model=endpoint.model, prompt_version=self.prompt.tag)

    def _messages(self, clip: ClipFrames) -> list[dict]:
        system, user = self.prompt.messages(n_frames=len(clip.frames), start_s=f"{clip.start_s:.1f}",
                                            end_s=f"{clip.end_s:.1f}")
        images = [{"type": "image_url", "image_url": {"url": jpeg_data_url(f, self.settings.jpeg_quality)}}
                  for f in clip.frames]
        return [system, {"role": "user", "content": images + [{"type": "text", "text": user["content"]}]}]

    async def caption_one(self, client: LLMClient, clip: ClipFrames) -> CaptionResult:
        try:
            out = await client.complete(self._messages(clip), CaptionOut, self.prompt.tag, _check_caption)
            return out.caption.strip()
        except LLMError as exc:
            return CaptionFailure(exc.reason, exc.detail)

    async def judge_one(self, client: LLMClient, clip: ClipFrames, caption: str, labels: list[str]
                        ) -> Optional[JudgeOut]:
        """The VLM's verdict on a caption, given the same frames; None when the request fails for good."""
        prompt = load_prompt("vlm_judge")
        system, user = prompt.messages(n_frames=len(clip.frames), start_s=f"{clip.start_s:.1f}",
                                       end_s=f"{clip.end_s:.1f}", labels=", ".join(labels) or "normal",
                                       caption=caption)
        images = [{"type": "image_url", "image_url": {"url": jpeg_data_url(f, self.settings.jpeg_quality)}}
                  for f in clip.frames]
        messages = [system, {"role": "user", "content": images + [{"type": "text", "text": user["content"]}]}]
        try:
            return await client.complete(messages, JudgeOut, prompt.tag)
        except LLMError:
            return None

    async def _caption_all(self, clips: list[ClipFrames]) -> list[CaptionResult]:
        async with LLMClient(self.endpoint, self.llm, self.cache, self.usage) as client:
            return list(await asyncio.gather(*(self.caption_one(client, c) for c in clips)))

    def caption(self, clips: list[ClipFrames]) -> list[CaptionResult]:
        return asyncio.run(self._caption_all(clips))


# ---------------------------------------------------------------- hivau-train models
class HivauCaptioner:
    """A model from hivau-train: it samples its own frames (uniform, as it was trained for clips) and the
    motion-masked frames beside them from the clip file, then answers the clip-caption instruction."""

    def __init__(self, settings: CaptionSettings):
        if not settings.model:
            raise ValueError("the hivau captioner needs captioner.model: a hivau-train model folder or models folder")
        self.path = resolve_model(settings.model)
        self.model = load_model(self.path)
        self.settings = settings
        self.prompt = TEMPLATES[("clip", "caption")][0]
        self.generator = Generator(backend="hivau", model=str(self.path), prompt_version="hivau-vlm@1")
        cfg = self.model.cfg
        self.store = FrameStore(None, cfg.frame_size, cfg.motion_mask, cfg.motion_threshold)

    def _inputs(self, clip: ClipFrames):
        return self.store.uniform(Path(clip.media_path), self.model.cfg.n_frames)

    def caption(self, clips: list[ClipFrames]) -> list[CaptionResult]:
        from hivau.models.inference import to_device

        results: list[CaptionResult] = []
        collate = self.model.collator()  # the model's own inputs: stacked frames, or its processor's tensors
        device = next(self.model.parameters()).device
        for start in range(0, len(clips), self.settings.batch_size):
            batch = clips[start:start + self.settings.batch_size]
            try:
                inputs = collate([(self.prompt, None, *self._inputs(c), "") for c in batch], train=False)
                inputs.pop("over_length")
                texts = self.model.generate(**to_device(inputs, device), max_new_tokens=self.settings.max_new_tokens)
            except Exception as exc:  # decord and torch raise their own types; each clip gets the reason
                results += [CaptionFailure(reasons.CAPTION_FAILED, f"{type(exc).__name__}: {exc}"[:300])] * len(batch)
                continue
            results += [t or CaptionFailure(reasons.CAPTION_FAILED, "the model generated no text") for t in texts]
        return results


# ---------------------------------------------------------------- per video
def make_captioner(settings: CaptionSettings, ws: Workspace, usage: Optional[Usage] = None) -> Optional[Captioner]:
    """The configured model captioner; None for `provided`. Local models are loaded once per process."""
    if settings.backend == "provided":
        return None
    if settings.backend in ("transformers", "hivau"):
        return _local_captioner(settings.model_dump_json())
    return OpenAICaptioner(settings, ResponseCache(ws.llm_cache), usage)


@lru_cache(maxsize=2)
def _local_captioner(settings_json: str) -> Captioner:
    settings = CaptionSettings.model_validate_json(settings_json)
    if settings.backend == "hivau":
        return HivauCaptioner(settings)
    if not settings.model:
        raise ValueError("the transformers captioner needs captioner.model: a local folder or a hub id")
    return TransformersCaptioner(settings.model, settings)


def _clip_frames(ws: Workspace, clip, settings: CaptionSettings) -> ClipFrames:
    """Frames of the cut clip file, with times moved back onto the source video's clock."""
    sampled = sample_frames(str(ws.root / clip.media_path), n=settings.frames_per_clip,
                            short_side=settings.frame_short_side)
    offset = clip.cut_start_s if clip.cut_start_s is not None else clip.start_s
    return ClipFrames(clip.clip_id, clip.start_s, clip.end_s, sampled.frames,
                      [round(offset + t, 3) for t in sampled.times_s], str(ws.root / clip.media_path))


def _cache_key(captioner: Captioner, ws: Workspace, clip, settings: CaptionSettings) -> str:
    stat = (ws.root / clip.media_path).stat()
    parts = [captioner.generator.model_dump(), clip.media_path, stat.st_size, stat.st_mtime_ns,
             settings.frames_per_clip, settings.frame_short_side, settings.max_new_tokens]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _caption_failure(item: VideoItem, clip_id: str, reason: str, detail: str) -> QuarantineRecord:
    return item.failure(clip_id, "clip", "caption", reason, detail)


def _clips_to_caption(item: VideoItem, captioner: Optional[Captioner], settings: CaptionSettings) -> list:
    """The clips of one video that need a caption; with no model (`provided`), each one lacking a caption is
    recorded as `caption_missing` instead. Earlier caption failures are cleared: this run tries again."""
    if item.status == "quarantined":
        return []
    have = {c.item_id for c in item.captions if c.level == "clip" and c.text.strip()}
    item.quarantine = [q for q in item.quarantine if q.stage != "caption"]
    if captioner is None:
        item.quarantine += [_caption_failure(item, c.clip_id, reasons.CAPTION_MISSING,
                                             "the annotations give no caption for this clip "
                                             "(captioner.backend=provided)")
                            for c in item.planned_clips if c.clip_id not in have]
        return []
    return [c for c in item.planned_clips if c.media_path and (settings.recaption_provided or c.clip_id not in have)]


def _from_cache(item: VideoItem, clip, ws: Workspace, captioner: Captioner, settings: CaptionSettings) -> Optional[str]:
    """The clip's cache key, or None when its caption is already stored under that key (then it is applied)."""
    key = _cache_key(captioner, ws, clip, settings)
    state_path = ws.caption_state(clip.clip_id)
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    if state.get("key") != key:
        return key
    item.captions = [c for c in item.captions if c.item_id != clip.clip_id] + [Caption.model_validate(state["caption"])]
    return None


def _frames_or_failure(item: VideoItem, clip, ws: Workspace, settings: CaptionSettings) -> Optional[ClipFrames]:
    try:
        return _clip_frames(ws, clip, settings)
    except Exception as exc:  # decord raises its own error types for unreadable files
        item.quarantine.append(_caption_failure(item, clip.clip_id, reasons.CAPTION_FAILED,
                                                f"could not sample frames: {type(exc).__name__}: {exc}"[:300]))
        return None


def _apply(item: VideoItem, frames: ClipFrames, key: str, result: CaptionResult, generator: Generator,
           ws: Workspace) -> None:
    if isinstance(result, CaptionFailure):
        item.quarantine.append(_caption_failure(item, frames.clip_id, result.reason, result.detail))
        return
    caption = Caption(item_id=frames.clip_id, level="clip", video_id=item.video_id, text=result,
                      provenance="auto_draft", generator=generator, frame_times=frames.times_s)
    item.captions = [c for c in item.captions if c.item_id != frames.clip_id] + [caption]
    # a judge's verdict was on the old caption
    item.checks = [c for c in item.checks if not (c.item_id == frames.clip_id and c.check == "vlm_judge")]
    atomic_write_json(ws.caption_state(frames.clip_id),
                      {"key": key, "caption": caption.model_dump(mode="json")})


def caption_items(items: list[VideoItem], ws: Workspace, captioner: Optional[Captioner],
                  settings: CaptionSettings) -> list[VideoItem]:
    """Caption the clips of many videos that need it, in batches that cross video boundaries; each failure is
    a reasoned record for that clip. Frames are decoded one window of clips at a time, so memory stays bounded."""
    items = [it.model_copy(deep=True) for it in items]
    todo = [(item, clip) for item in items for clip in _clips_to_caption(item, captioner, settings)]
    window = max(settings.batch_size, settings.llm.concurrency if settings.backend == "openai" else 1) * 4
    for start in range(0, len(todo), window):
        pending = []
        for item, clip in todo[start:start + window]:
            if (key := _from_cache(item, clip, ws, captioner, settings)) is not None:
                if (frames := _frames_or_failure(item, clip, ws, settings)) is not None:
                    pending.append((item, frames, key))
        results = captioner.caption([frames for _, frames, _ in pending]) if pending else []
        for (item, frames, key), result in zip(pending, results):
            _apply(item, frames, key, result, captioner.generator, ws)
    for item in items:
        item.advance("captioned")
    return items


def caption_stream(items: Iterable[VideoItem], ws: Workspace, settings: CaptionSettings,
                   on_done: Callable[[VideoItem], None], window: Optional[int] = None) -> Usage:
    """The OpenAI-compatible captioner over a whole run: one client keeps `llm.concurrency` requests in flight
    across videos; frames are decoded (in a thread) only for clips about to be sent. Each video is handed to
    `on_done` when its clips are done."""
    captioner = OpenAICaptioner(settings, ResponseCache(ws.llm_cache))
    concurrency = captioner.llm.concurrency
    window = window or max(2 * concurrency, 4)

    async def run() -> None:
        async with LLMClient(captioner.endpoint, captioner.llm, captioner.cache, captioner.usage) as client:
            decoding = asyncio.Semaphore(2 * concurrency)  # frames in memory: clips being sent, and the next few
            videos = asyncio.Semaphore(window)

            async def one_clip(item: VideoItem, clip) -> None:
                if (key := _from_cache(item, clip, ws, captioner, settings)) is None and not settings.judge:
                    return
                async with decoding:
                    frames = await asyncio.to_thread(_frames_or_failure, item, clip, ws, settings)
                    if frames is None:
                        return
                    if key is not None:
                        _apply(item, frames, key, await captioner.caption_one(client, frames), captioner.generator, ws)
                    if settings.judge:
                        await _judge_caption(item, clip, frames, captioner, client)

            errors: list[BaseException] = []

            async def one_video(item: VideoItem) -> None:
                try:
                    await asyncio.gather(*(one_clip(item, c) for c in _clips_to_caption(item, captioner, settings)))
                    item.advance("captioned")
                    on_done(item)
                except Exception as exc:  # a bug, not a request failure (those are records): kept, not lost
                    errors.append(exc)
                finally:
                    videos.release()

            running: set[asyncio.Task] = set()
            for item in items:
                await videos.acquire()
                if errors:
                    break  # no new videos after a failure; the ones in flight finish (and are saved) first
                task = asyncio.create_task(one_video(item))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running)
            if errors:
                raise errors[0]

    asyncio.run(run())
    return captioner.usage


async def _judge_caption(item: VideoItem, clip, frames: ClipFrames, captioner: OpenAICaptioner,
                         client: LLMClient) -> None:
    """The VLM judge's verdict on the clip's machine caption, as a `vlm_judge` flag (none when it says keep)."""
    caption = next((c for c in item.captions if c.item_id == clip.clip_id and c.provenance == "auto_draft"), None)
    if caption is None:
        return
    verdict = await captioner.judge_one(client, frames, caption.text, clip.labels)
    item.checks = [c for c in item.checks if not (c.check == "vlm_judge" and c.item_id == clip.clip_id)]
    if verdict is None or verdict.verdict == "keep":
        return
    scores = (verdict.faithfulness, verdict.label_consistency, verdict.completeness)
    item.checks.append(CheckRecord(
        item_id=clip.clip_id, level="clip", video_id=item.video_id, target="caption", check="vlm_judge",
        severity="error" if verdict.verdict == "discard" else "warn", score=float(min(scores)),
        text_provenance="auto_draft", generator=caption.generator,
        evidence=f"{verdict.verdict}: faithfulness {scores[0]}, label {scores[1]}, completeness {scores[2]}: "
                 f"{verdict.reason}"[:500]))


def caption_item(item: VideoItem, ws: Workspace, captioner: Optional[Captioner],
                 settings: CaptionSettings) -> VideoItem:
    """One video's clips (see `caption_items`)."""
    return caption_items([item], ws, captioner, settings)[0]
