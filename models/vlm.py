"""`--preset vlm`: a local Hugging Face video VLM (Qwen2-VL/2.5-VL, LLaVA-OneVision, InternVL) with HAWK's motion branch.

The checkpoint is loaded as it is (`AutoModelForImageTextToText`, `AutoProcessor`); frames go in through its own
processor as videos and the prompt through its own chat template. The motion frames pass through the same
vision tower with weights of their own (LoRA adapters on a twin that shares the frozen base weights, or a full
copy) and a copy of the model's projector, and enter the prompt as a second video after the appearance one.
Loss = L_VL + t1 L_MV + t2 L_ML as in `hivau.models.composed_vlm`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch
from pydantic import Field
from torch import nn

from hivau.models import interface
from hivau.models.config import ScorerConfig, Strict
from hivau.models.interface import IGNORE, MOTION_PROMPT, Losses
from hivau.models.scorer import AnomalyScorer


class VLMConfig(Strict):
    """What `--preset vlm` reads from `preset_options` (or a config file's `preset_options:`)."""

    model_path: str = Field(description="local folder of a Hugging Face image-text-to-text checkpoint")
    family: Optional[str] = Field(None, description="model_type of the checkpoint (read from it when not given)")
    n_frames: int = Field(16, ge=2, description="frames per item: ATS for events and videos, uniform for clips")
    frame_size: int = Field(336, description="frames are decoded at this square size; the processor resizes them")
    motion_mask: Literal["soft", "hard"] = "soft"
    motion_threshold: float = 0.2
    motion_branch: Literal["lora", "copy", "none"] = Field(
        "lora", description="motion frames through the tower with their own LoRA adapters, a full copy, or not at all")
    motion_lora_r: int = 8
    lm_train: Literal["lora", "full", "frozen"] = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    train_projector: bool = Field(True, description="fine-tune the appearance projector (the tower stays frozen)")
    compress_dim: int = 64
    max_length: Optional[int] = Field(None, description="longest sequence; default the LM's context "
                                                        "(max_position_embeddings)")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field("auto", description="weights' dtype; auto: bf16 on CUDA")
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="QLoRA: the LM's base weights in 4-bit NF4 (or 8-bit) with bitsandbytes; towers, "
                            "projectors and the output head stay in `dtype`")
    gradient_checkpointing: bool = False
    max_new_tokens: int = Field(256, description="longest generated answer at evaluation")
    scorer: ScorerConfig = Field(default_factory=lambda: ScorerConfig(d_model=128, epochs=30))


@dataclass(frozen=True)
class Family:
    """Where a family keeps its parts and how its video placeholders are filled."""

    tower: str  # the vision tower's attribute on the core model
    projector: str  # the projector's attribute: on the core model, or on the tower when `projector_in_tower`
    projector_in_tower: bool
    mrope: bool  # positions come from input_ids and the video grids (Qwen's 3-D RoPE)
    frames_as_images: bool = False  # InternVL: a video is its frames as images, each between <img> tags
    placeholder: str = "video_token_id"  # the config attribute of the token that video features replace


FAMILIES = {
    "qwen2_vl": Family("visual", "merger", True, True),
    "qwen2_5_vl": Family("visual", "merger", True, True),
    "llava_onevision": Family("vision_tower", "multi_modal_projector", False, False),
    "internvl": Family("vision_tower", "multi_modal_projector", False, False, True, "image_token_id"),
}


def torch_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def shared_twin(module: nn.Module) -> nn.Module:
    """A structural copy whose parameters and buffers are the original's own tensors (no memory, no drift)."""
    memo = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
    return copy.deepcopy(module, memo)


def linear_names(module: nn.Module, skip: str) -> list[str]:
    """Names of the Linear layers in `module` outside the submodule `skip` (LoRA targets of a vision tower)."""
    return [n for n, m in module.named_modules() if isinstance(m, nn.Linear) and not n.startswith(skip)]


@contextlib.contextmanager
def swapped(module: nn.Module, replacements: dict[str, nn.Module]):
    """Temporarily put other submodules in place, so the family's own feature code runs on the motion weights."""
    saved = {k: module._modules[k] for k in replacements}
    module._modules.update(replacements)
    try:
        yield
    finally:
        module._modules.update(saved)


# ---------------------------------------------------------------- per-family tensor plumbing
def split_videos(family: str, encoded: dict, n_videos: int) -> list[dict]:
    """The processor's pixel tensors of a text with several videos, one dict per video, in placeholder order."""
    if FAMILIES[family].frames_as_images:  # every video has the same frame count (items are padded to n)
        frames = encoded["pixel_values"].chunk(n_videos)
        return [{"pixel_values": f, "frame_count": torch.tensor([len(f)])} for f in frames]
    pixels = encoded["pixel_values_videos"]
    if FAMILIES[family].mrope:
        grid = encoded["video_grid_thw"]
        chunks = torch.split(pixels, grid.prod(-1).tolist())
        return [{"pixel_values_videos": c, "video_grid_thw": grid[i:i + 1]} for i, c in enumerate(chunks)]
    return [{"pixel_values_videos": pixels[i:i + 1]} for i in range(len(pixels))]


def join_videos(parts: list[dict]) -> dict:
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]} if parts else {}


def video_features(family: str, core: nn.Module, videos: dict, dtype: torch.dtype) -> list[torch.Tensor]:
    """The family's own path from pixels to LM-space tokens: one (tokens, d_lm) tensor per video."""
    cfg = core.config
    if FAMILIES[family].frames_as_images:
        out = core.get_image_features(videos["pixel_values"].to(dtype), vision_feature_layer=cfg.vision_feature_layer,
                                      vision_feature_select_strategy=cfg.vision_feature_select_strategy,
                                      return_dict=True).pooler_output
        return [f.flatten(0, 1) for f in torch.split(out, videos["frame_count"].tolist())]
    pixels = videos["pixel_values_videos"].to(dtype)
    if FAMILIES[family].mrope:
        return list(core.get_video_features(pixels, videos["video_grid_thw"], return_dict=True).pooler_output)
    out = core.get_video_features(pixels, vision_feature_layer=cfg.vision_feature_layer,
                                  vision_feature_select_strategy=cfg.vision_feature_select_strategy,
                                  return_dict=True).pooler_output
    return list(out)


def frame_pixels(family: str, processor, frames: np.ndarray) -> dict:
    """Pixel inputs that give one feature set per frame (the scorer's snippets)."""
    if FAMILIES[family].mrope:  # as images: a video would merge frame pairs (temporal patches)
        out = processor.image_processor(images=list(frames), return_tensors="pt")
        return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}
    out = processor.video_processor(videos=[frames], return_tensors="pt")
    if FAMILIES[family].frames_as_images:
        return {"pixel_values": out["pixel_values_videos"][0], "frame_count": torch.tensor([len(frames)])}
    return {"pixel_values_videos": out["pixel_values_videos"]}


def frame_features(family: str, core: nn.Module, pixels: dict, n: int, dtype: torch.dtype) -> torch.Tensor:
    """(n, d_lm): each frame's LM-space tokens, averaged."""
    if FAMILIES[family].mrope:
        out = core.get_image_features(pixels["pixel_values"].to(dtype), pixels["image_grid_thw"], return_dict=True)
        return torch.stack([t.mean(0) for t in out.pooler_output])
    tokens = video_features(family, core, pixels, dtype)[0]
    if not FAMILIES[family].frames_as_images:
        tokens = tokens[:-1]  # LLaVA-OneVision ends a video with one newline token
    return tokens.reshape(n, -1, tokens.shape[-1]).mean(1)


# ---------------------------------------------------------------- sequences (run in DataLoader workers)
def answer_frame(processor) -> tuple[str, str]:
    """(text the model writes before the answer, end of turn after it), read off the chat template.

    The end of turn is what the template renders after an assistant message. The prefix is what it renders between
    its generation prompt and the message when a conversation extends the prompt; templates whose turns open
    otherwise than their generation prompt (llava-hf's LLaVA-OneVision: "<|im_start|>assistant " in a turn,
    "<|im_start|>assistant\\n" as the prompt) get none, since inference gives the model the prompt and the answer
    comes right after it.
    """
    user = [{"role": "user", "content": [{"type": "text", "text": "Q"}]}]
    marker = "\x00ANSWER\x00"
    prompt = processor.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full = processor.apply_chat_template(
        user + [{"role": "assistant", "content": [{"type": "text", "text": marker}]}], tokenize=False)
    if full.count(marker) != 1:
        raise ValueError("the chat template does not render an assistant message's text")
    before, after = full.split(marker)
    return (before[len(prompt):] if before.startswith(prompt) else ""), after


class VideoChatCollator:
    """Rows and their frames -> token ids, labels and pixel tensors, through the checkpoint's processor.

    The prompt is the chat template's user turn (video, motion video, instruction) with the generation prompt, exactly
    as inference renders it; the answer is tokenised apart and appended with the end of turn the template writes after
    an assistant message, so the labels cover what the model must write after that prompt: the answer and its end of
    turn. Nothing is cut below `max_length`; longer rows are cut there and counted (`over_length`).
    """

    def __init__(self, processor, family: str, max_length: int, placeholder_id: int, motion: bool = True):
        self.processor, self.family, self.max_length, self.motion = processor, family, max_length, motion
        self.placeholder_id = placeholder_id
        self.tokenizer = processor.tokenizer
        self.answer_prefix, self.answer_suffix = answer_frame(processor)

    def prompt_text(self, prompt: str, n_videos: int) -> str:
        content = [{"type": "video"}] * n_videos + [{"type": "text", "text": prompt}]
        return self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                  tokenize=False)

    def encode(self, prompt: str, answer: Optional[str], videos: list[np.ndarray]) -> dict:
        enc = self.processor(text=[self.prompt_text(prompt, len(videos))], videos=list(videos), return_tensors="pt")
        ids = enc["input_ids"][0]
        labels = torch.full_like(ids, IGNORE)
        if answer is not None:
            answer_ids = torch.tensor(self.tokenizer(self.answer_prefix + answer + self.answer_suffix,
                                                     add_special_tokens=False)["input_ids"], dtype=torch.long)
            ids, labels = torch.cat([ids, answer_ids]), torch.cat([labels, answer_ids])
        over = len(ids) > self.max_length
        ids, labels = ids[:self.max_length], labels[:self.max_length]
        item = {"input_ids": ids, "labels": labels, "videos": split_videos(self.family, enc, len(videos)),
                "over_length": over}
        if "mm_token_type_ids" in enc:
            types = enc["mm_token_type_ids"][0]
            item["mm_token_type_ids"] = torch.cat([types, types.new_zeros(len(ids) - len(types))])[:len(ids)]
        return item

    def visual_tokens(self, n_frames: int, size: int) -> int:
        """Placeholder tokens one video of n frames at size x size becomes (the same for every item)."""
        frames = np.zeros((n_frames, size, size, 3), dtype=np.uint8)
        ids = self.encode("", None, [frames])["input_ids"]
        return int((ids == self.placeholder_id).sum())

    def _expansion_text(self, n_frames: int, size: int) -> int:
        """Tokens besides the placeholders that one video adds to the text (InternVL's "FrameN: <img>" lines)."""
        frames = np.zeros((n_frames, size, size, 3), dtype=np.uint8)
        ids = self.encode("", None, [frames])["input_ids"]
        bare = self.tokenizer(self.prompt_text("", 1), add_special_tokens=False)["input_ids"]
        return len(ids) - int((ids == self.placeholder_id).sum()) - (len(bare) - 1)

    def length_report(self, rows, n_frames: int, size: int) -> dict:
        """How many rows are longer than `max_length` (those are cut there; none is cut shorter)."""
        videos = 2 if self.motion else 1
        # the rendered prompt holds one placeholder per video, which the processor expands
        visual = self.visual_tokens(n_frames, size) + self._expansion_text(n_frames, size) - 1
        prompts = self.tokenizer([self.prompt_text(r.prompt, videos) for r in rows], add_special_tokens=False)
        answers = self.tokenizer([self.answer_prefix + r.answer + self.answer_suffix for r in rows],
                                 add_special_tokens=False)
        lengths = [len(p) + len(a) + videos * visual for p, a in zip(prompts["input_ids"], answers["input_ids"])]
        return {"max_length": self.max_length, "longest_row": max(lengths, default=0),
                "rows_over_length": sum(n > self.max_length for n in lengths), "visual_tokens_per_video": visual + 1}

    def pad(self, items: list[dict], left: bool) -> dict:
        width = max(len(i["input_ids"]) for i in items)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        out = {"input_ids": torch.full((len(items), width), pad_id, dtype=torch.long),
               "labels": torch.full((len(items), width), IGNORE, dtype=torch.long),
               "attention_mask": torch.zeros(len(items), width, dtype=torch.long)}
        if "mm_token_type_ids" in items[0]:
            out["mm_token_type_ids"] = torch.zeros(len(items), width, dtype=torch.long)
        for row, item in enumerate(items):
            span = interface.pad_span(width, len(item["input_ids"]), left)
            out["input_ids"][row, span], out["labels"][row, span] = item["input_ids"], item["labels"]
            out["attention_mask"][row, span] = 1
            if "mm_token_type_ids" in out:
                out["mm_token_type_ids"][row, span] = item["mm_token_type_ids"]
        videos = [v for item in items for v in item["videos"]]
        if "video_grid_thw" in (videos[0] if videos else {}):
            out["video_grid_thw"] = torch.cat([v["video_grid_thw"] for v in videos])
        return out

    def __call__(self, samples: list[tuple], train: bool = True) -> dict:
        """samples: (prompt, answer or None, frames, motion frames, motion text) -> one model batch."""
        videos = (lambda f, m: [f, m]) if self.motion else (lambda f, m: [f])
        main = [self.encode(p, a if train else None, videos(f, m)) for p, a, f, m, _ in samples]
        batch = {"main": self.pad(main, left=not train),
                 "appearance": join_videos([i["videos"][0] for i in main]),
                 "motion": join_videos([i["videos"][1] for i in main]) if self.motion else {}}
        with_text = [k for k, s in enumerate(samples) if s[4]] if train and self.motion else []
        if with_text:  # L_ML: the motion phrases from the motion video alone
            ml = [self.encode(MOTION_PROMPT, samples[k][4], [samples[k][3]]) for k in with_text]
            batch["ml"], batch["ml_items"] = self.pad(ml, left=False), with_text
        return {"batch": batch, "over_length": sum(i["over_length"] for i in main)}


# ---------------------------------------------------------------- the model
class PretrainedVideoLLM(nn.Module):
    """A pretrained video VLM with HAWK's motion branch and Holmes-VAU's anomaly scorer beside it."""

    def __init__(self, cfg: VLMConfig, device: torch.device = torch.device("cpu"), load_weights: bool = True):
        super().__init__()
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(cfg.model_path)
        hf_config = AutoConfig.from_pretrained(cfg.model_path)
        family = cfg.family or hf_config.model_type
        if family not in FAMILIES:
            raise ValueError(f"{cfg.model_path}: model_type {family!r} is not supported by --preset vlm "
                             f"(supported: {', '.join(sorted(FAMILIES))})")
        self.cfg, self.family, self.spec = cfg.model_copy(update={"family": family}), family, FAMILIES[family]
        self.dtype_ = torch_dtype(cfg.dtype, device)
        if load_weights:
            self.vlm = AutoModelForImageTextToText.from_pretrained(cfg.model_path, dtype=self.dtype_,
                                                                   **self._quantization(device))
        else:
            self.vlm = AutoModelForImageTextToText.from_config(hf_config, dtype=self.dtype_)
        self.tokenizer = self.processor.tokenizer
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        text_cfg = self.vlm.config.get_text_config()
        self.d_lm = text_cfg.hidden_size
        self.max_length = cfg.max_length or getattr(text_cfg, "max_position_embeddings", 32768)
        self.video_token_id = getattr(self.vlm.config, self.spec.placeholder)
        self.vlm.requires_grad_(False)
        self._add_lm_training()
        self._add_motion_branch()
        self.compress_v = nn.Linear(self.d_lm, cfg.compress_dim)
        self.compress_m = nn.Linear(self.d_lm, cfg.compress_dim)
        d_score = self.d_lm * (2 if cfg.scorer.use_motion else 1)
        self.scorer = AnomalyScorer(d_score, cfg.scorer)
        self.appearance_projector().requires_grad_(cfg.train_projector)
        # the scorer reads the base tower and projector as they were loaded: stage 2 moves the projector, and
        # the scorer (trained in stage 1) must keep seeing the features it was trained on
        self.scorer_projector = copy.deepcopy(self.appearance_projector()).requires_grad_(False) \
            if cfg.train_projector else None
        if cfg.gradient_checkpointing:
            if hasattr(self.vlm, "activation_checkpointing_enable"):  # transformers >= 5.2's name
                self.vlm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.vlm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.vlm.enable_input_require_grads()

    def _quantization(self, device: torch.device) -> dict:
        """from_pretrained arguments that load only the LM quantized (QLoRA), or none."""
        if self.cfg.quantization == "none":
            return {}
        from transformers import BitsAndBytesConfig

        # full precision: the towers and projectors (trained, or twinned) and the output head; matched from the
        # start of each module's name
        keep = [f"model.{self.spec.tower}", f"model.{self.spec.projector}", "lm_head"]
        config = BitsAndBytesConfig(load_in_4bit=self.cfg.quantization == "4bit",
                                    load_in_8bit=self.cfg.quantization == "8bit", bnb_4bit_quant_type="nf4",
                                    bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=self.dtype_,
                                    llm_int8_skip_modules=keep)
        return {"quantization_config": config, "device_map": {"": device.index if device.type == "cuda" else "cpu"}}

    # ------------------------------------------------------------ parts
    @property
    def core(self) -> nn.Module:
        return self.vlm.model

    def appearance_tower(self) -> nn.Module:
        return getattr(self.core, self.spec.tower)

    def appearance_projector(self) -> nn.Module:
        owner = self.appearance_tower() if self.spec.projector_in_tower else self.core
        return getattr(owner, self.spec.projector)

    def _add_lm_training(self) -> None:
        lm = self.core.language_model
        if self.cfg.lm_train == "full":
            lm.requires_grad_(True)
        elif self.cfg.lm_train == "lora":
            from peft import inject_adapter_in_model

            lora = interface.lora_config(self.cfg.lora_r, self.cfg.lora_alpha, self.cfg.lora_targets)
            inject_adapter_in_model(lora, lm, adapter_name="lm")
            interface.train_adapters_only(lm)

    def _add_motion_branch(self) -> None:
        """The motion tower: the appearance tower's twin with LoRA (or a full copy), with a trainable projector copy."""
        self.motion_tower = self.motion_projector = None
        if self.cfg.motion_branch == "none":
            return
        tower = self.appearance_tower()
        inner = self.spec.projector if self.spec.projector_in_tower else "\x00"
        if self.cfg.motion_branch == "copy":
            twin = copy.deepcopy(tower).requires_grad_(True)
        else:
            from peft import inject_adapter_in_model

            twin = shared_twin(tower)
            targets = linear_names(twin, skip=inner)
            lora = interface.lora_config(self.cfg.motion_lora_r, 2 * self.cfg.motion_lora_r, targets)
            inject_adapter_in_model(lora, twin, adapter_name="motion")
            interface.train_adapters_only(twin)
        projector = copy.deepcopy(self.appearance_projector()).requires_grad_(True)
        if self.spec.projector_in_tower:  # registered once, inside the twin, as in the model itself
            twin._modules[self.spec.projector], projector = projector, None
        self.motion_tower, self.motion_projector = twin, projector

    def _motion_swap(self):
        parts = {self.spec.tower: self.motion_tower}
        if not self.spec.projector_in_tower:
            parts[self.spec.projector] = self.motion_projector
        return swapped(self.core, parts)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return []  # the towers' own weights never train here (the motion branch's adapters are not an encoder)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return interface.trainable_state(self, also=("scorer.", "scorer_projector."))

    # ------------------------------------------------------------ features
    def appearance_features(self, videos: dict) -> list[torch.Tensor]:
        return video_features(self.family, self.core, self._to_device(videos), self.dtype_)

    def motion_features(self, videos: dict) -> list[torch.Tensor]:
        with self._motion_swap():
            return video_features(self.family, self.core, self._to_device(videos), self.dtype_)

    def _to_device(self, tensors: dict) -> dict:
        device = self.compress_v.weight.device
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in tensors.items()}

    def _embed(self, seq: dict, features: list[torch.Tensor]) -> torch.Tensor:
        """Token embeddings with each video placeholder run replaced by its video's features, in order."""
        ids = seq["input_ids"]
        embeds = self.vlm.get_input_embeddings()(ids)
        mask = (ids == self.video_token_id).unsqueeze(-1)
        feats = torch.cat(features).to(embeds.dtype)
        if int(mask.sum()) != len(feats):
            raise ValueError(f"{int(mask.sum())} video placeholders but {len(feats)} video tokens")
        return embeds.masked_scatter(mask, feats)

    def _lm_inputs(self, seq: dict, features: list[torch.Tensor]) -> dict:
        seq = self._to_device(seq)
        inputs = {"inputs_embeds": self._embed(seq, features), "attention_mask": seq["attention_mask"]}
        if self.spec.mrope:  # 3-D positions need the ids, token types and grids of every video in the sequence
            inputs.update(input_ids=seq["input_ids"], mm_token_type_ids=seq["mm_token_type_ids"],
                          video_grid_thw=seq["video_grid_thw"])
        return inputs

    @staticmethod
    def _interleave(app: list[torch.Tensor], mot: Optional[list[torch.Tensor]]) -> list[torch.Tensor]:
        return list(app) if mot is None else [t for pair in zip(app, mot) for t in pair]

    # ------------------------------------------------------------ training
    def forward(self, batch: dict, t1: float = 0.1, t2: float = 0.1) -> Losses:
        app = self.appearance_features(batch["appearance"])
        mot = self.motion_features(batch["motion"]) if self.motion_tower is not None else None
        main = self._lm_inputs(batch["main"], self._interleave(app, mot))
        vl = self.vlm(**main, labels=batch["main"]["labels"].to(main["attention_mask"].device)).loss
        zero = vl.new_zeros(())
        mv = ml = zero
        if mot is not None and t1:
            pooled_v = torch.stack([t.mean(0) for t in app]).float()
            pooled_m = torch.stack([t.mean(0) for t in mot]).float()
            mv = interface.motion_alignment(self.compress_v(pooled_v), self.compress_m(pooled_m))
        if mot is not None and t2 and batch.get("ml_items"):
            seq = batch["ml"]
            ml_inputs = self._lm_inputs(seq, [mot[k] for k in batch["ml_items"]])
            ml = self.vlm(**ml_inputs, labels=seq["labels"].to(ml_inputs["attention_mask"].device)).loss
        return Losses.of(vl, mv, ml, t1, t2)

    # ------------------------------------------------------------ inference
    @torch.inference_mode()
    def generate(self, batch: dict, max_new_tokens: int = 256) -> list[str]:
        app = self.appearance_features(batch["appearance"])
        mot = self.motion_features(batch["motion"]) if self.motion_tower is not None else None
        inputs = self._lm_inputs(batch["main"], self._interleave(app, mot))
        tok = self.tokenizer
        out = self.vlm.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        width = batch["main"]["input_ids"].shape[1]
        new = out[:, width:] if "input_ids" in inputs else out  # with ids given, generate returns them too
        return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]

    def snippet_features(self, frames: np.ndarray, motion: Optional[np.ndarray], chunk: int = 32) -> torch.Tensor:
        """(S, H, W, 3) uint8 snippet frames -> (S, d) scorer inputs, `chunk` frames at a time, on the CPU."""
        feats = []
        with torch.no_grad():
            for start in range(0, len(frames), chunk):
                f = [self._frame_features(frames[start:start + chunk])]
                if self.cfg.scorer.use_motion:  # the motion-masked frames through the same frozen path
                    f.append(self._frame_features(motion[start:start + chunk]))
                feats.append(torch.cat(f, dim=-1).float().cpu())
        return torch.cat(feats)

    def _frame_features(self, frames: np.ndarray) -> torch.Tensor:
        """Per-frame features through the frozen tower and the projector as loaded (the scorer's inputs)."""
        pixels = self._to_device(frame_pixels(self.family, self.processor, np.asarray(frames)))
        owner = self.appearance_tower() if self.spec.projector_in_tower else self.core
        as_loaded = swapped(owner, {self.spec.projector: self.scorer_projector}) if self.scorer_projector \
            else contextlib.nullcontext()
        with as_loaded:
            return frame_features(self.family, self.core, pixels, len(frames), self.dtype_)

    def collator(self) -> VideoChatCollator:
        return VideoChatCollator(self.processor, self.family, self.max_length, self.video_token_id,
                                 motion=self.motion_tower is not None)
