"""The motion-aware video LLM: appearance and motion encoders, projectors, compression heads, a causal LM.

Loss = L_VL + t1 * L_MV + t2 * L_ML (HAWK, sec. 4): L_VL is the answer's language loss given video tokens,
motion tokens and the instruction; L_MV = 1 - cos(C_v(video), C_m(motion)); L_ML is the language loss of
the item's motion phrases given the motion tokens alone.
"""

from __future__ import annotations

import copy
import math
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hivau.models import interface
from hivau.models.config import ModelConfig
from hivau.models.interface import IGNORE, MOTION_PROMPT, Losses
from hivau.models.scorer import AnomalyScorer


def build_vision(cfg: ModelConfig) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    if cfg.vision_path:
        model = AutoModel.from_pretrained(cfg.vision_path)
    else:
        vision = dict(cfg.vision)
        model = AutoModel.from_config(AutoConfig.for_model(vision.pop("model_type"), **vision))
    return model.vision_model if hasattr(model, "text_model") else model  # a full CLIP/SigLIP checkpoint


def build_lm(cfg: ModelConfig) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    if cfg.text_path:
        return AutoModelForCausalLM.from_pretrained(cfg.text_path)
    text = dict(cfg.text)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(text.pop("model_type"), **text))


class Branch(nn.Module):
    """One encoder with its projector into the LM; the compression head shares the projector's first layer."""

    def __init__(self, encoder: nn.Module, d_vision: int, d_lm: int, d_compress: int, patch_tokens: int):
        super().__init__()
        self.encoder = encoder
        self.proj_in = nn.Linear(d_vision, d_lm)
        self.proj_out = nn.Sequential(nn.GELU(), nn.Linear(d_lm, d_lm))
        self.compress = nn.Sequential(nn.GELU(), nn.Linear(d_lm, d_compress))
        self.grid = int(math.isqrt(patch_tokens))

    def frame_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(F, 3, H, W) -> (F, 1 + grid^2, d_vision): the pooled CLS and an average-pooled patch grid."""
        out = self.encoder(pixel_values=pixels)
        hidden = out.last_hidden_state
        side = int(math.isqrt(hidden.shape[1]))
        patches = hidden[:, -side * side:]  # CLIP puts its CLS first; SigLIP has none
        grid = patches.transpose(1, 2).reshape(len(pixels), -1, side, side)
        pooled = F.adaptive_avg_pool2d(grid, self.grid).flatten(2).transpose(1, 2)
        return torch.cat([out.pooler_output[:, None], pooled], dim=1)

    def cls(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encoder(pixel_values=pixels).pooler_output

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, 3, H, W) -> LM embeddings (B, N*(1+grid^2), d_lm) and the compressed vector (B, d_compress)."""
        b, n = pixels.shape[:2]
        tokens = self.frame_tokens(pixels.flatten(0, 1)).reshape(b, -1, self.proj_in.in_features)
        hidden = self.proj_in(tokens)
        return self.proj_out(hidden), self.compress(hidden).mean(dim=1)


class HivauVLM(nn.Module):
    """Encoders and a causal LM joined by projectors, built here (tiny) or from local checkpoints (pretrained)."""

    def __init__(self, cfg: ModelConfig, tokenizer, pretrained: bool = True):
        super().__init__()
        self.cfg, self.tokenizer = cfg, tokenizer
        build_cfg = cfg if pretrained else cfg.model_copy(update={"vision_path": None, "text_path": None})
        appearance = build_vision(build_cfg)
        d_vision = appearance.config.hidden_size
        self.lm = build_lm(build_cfg)
        if self.lm.get_input_embeddings().num_embeddings < len(tokenizer):
            self.lm.resize_token_embeddings(len(tokenizer))
        d_lm = self.lm.get_input_embeddings().embedding_dim
        self.video = Branch(appearance, d_vision, d_lm, cfg.compress_dim, cfg.patch_tokens)
        # HAWK: the motion encoder has the appearance encoder's architecture (and start) but its own weights
        self.motion = Branch(copy.deepcopy(appearance), d_vision, d_lm, cfg.compress_dim, cfg.patch_tokens)
        d_score = d_vision * (2 if cfg.scorer.use_motion else 1)
        self.scorer = AnomalyScorer(d_score, cfg.scorer)
        self.register_buffer("mean", torch.tensor(cfg.image_mean).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.image_std).view(1, 1, 3, 1, 1), persistent=False)
        self._apply_trainability()

    # ------------------------------------------------------------ set-up
    def _apply_trainability(self) -> None:
        for branch in (self.video, self.motion):
            branch.encoder.requires_grad_(not self.cfg.freeze_encoders)
        if self.cfg.lm_train == "lora":
            from peft import get_peft_model

            lora = interface.lora_config(self.cfg.lora_r, self.cfg.lora_alpha, self.cfg.lora_targets)
            self.lm = get_peft_model(self.lm, lora)
        elif self.cfg.lm_train == "frozen":
            self.lm.requires_grad_(False)

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, N, H, W, 3) -> normalised float (B, N, 3, H, W)."""
        x = frames.permute(0, 1, 4, 2, 3).float() / 255.0
        return (x - self.mean) / self.std

    # ------------------------------------------------------------ sequences
    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _sequence(self, prefix: torch.Tensor, prompt: str, answer: Optional[str]):
        """Embeddings and labels of [bos] prefix prompt [answer eos]; loss only on the answer."""
        tok = self.tokenizer
        embed = self.lm.get_input_embeddings()
        head = [tok.bos_token_id] if tok.bos_token_id is not None else []
        prompt_ids = head + self._ids(prompt)
        answer_ids = (self._ids(" " + answer)[: self.cfg.max_answer_tokens] + [tok.eos_token_id]) if answer else []
        ids = torch.tensor(prompt_ids + answer_ids, device=prefix.device)
        text = embed(ids)
        embeds = torch.cat([text[: len(head)], prefix, text[len(head):]], dim=0)
        labels = torch.full((len(embeds),), IGNORE, dtype=torch.long, device=prefix.device)
        if answer_ids:
            labels[-len(answer_ids):] = ids[-len(answer_ids):]
        return embeds, labels

    def _batch(self, sequences, left_pad: bool):
        """Pad (embeds, labels) pairs into one batch with an attention mask."""
        width = max(len(e) for e, _ in sequences)
        d = sequences[0][0].shape[-1]
        device = sequences[0][0].device
        embeds = torch.zeros(len(sequences), width, d, device=device, dtype=sequences[0][0].dtype)
        labels = torch.full((len(sequences), width), IGNORE, dtype=torch.long, device=device)
        mask = torch.zeros(len(sequences), width, dtype=torch.long, device=device)
        for i, (e, l) in enumerate(sequences):
            span = interface.pad_span(width, len(e), left_pad)
            embeds[i, span], labels[i, span], mask[i, span] = e, l, 1
        return embeds, labels, mask

    def _lm_loss(self, sequences) -> torch.Tensor:
        embeds, labels, mask = self._batch(sequences, left_pad=False)
        return self.lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss

    # ------------------------------------------------------------ training
    def forward(self, frames: torch.Tensor, motion_frames: torch.Tensor, prompts: list[str], answers: list[str],
                motion_texts: list[str], t1: float = 0.1, t2: float = 0.1) -> Losses:
        video_tokens, video_vec = self.video(self.pixels(frames))
        motion_tokens, motion_vec = self.motion(self.pixels(motion_frames))
        prefix = torch.cat([video_tokens, motion_tokens], dim=1)
        vl = self._lm_loss([self._sequence(p, q, a) for p, q, a in zip(prefix, prompts, answers)])
        zero = vl.new_zeros(())
        mv = interface.motion_alignment(video_vec, motion_vec) if t1 else zero
        with_motion = [i for i, text in enumerate(motion_texts) if text]
        ml = self._lm_loss([self._sequence(motion_tokens[i], MOTION_PROMPT, motion_texts[i]) for i in with_motion]) \
            if t2 and with_motion else zero
        return Losses.of(vl, mv, ml, t1, t2)

    # ------------------------------------------------------------ inference
    @torch.inference_mode()
    def generate(self, frames: torch.Tensor, motion_frames: torch.Tensor, prompts: list[str],
                 max_new_tokens: int = 96) -> list[str]:
        video_tokens, _ = self.video(self.pixels(frames))
        motion_tokens, _ = self.motion(self.pixels(motion_frames))
        prefix = torch.cat([video_tokens, motion_tokens], dim=1)
        embeds, _, mask = self._batch([self._sequence(p, q, None) for p, q in zip(prefix, prompts)], left_pad=True)
        tok = self.tokenizer
        out = self.lm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                               do_sample=False, eos_token_id=tok.eos_token_id,
                               pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]

    def snippet_features(self, frames, motion_frames, chunk: int = 64) -> torch.Tensor:
        """(S, H, W, 3) uint8 frames of one video's snippets (numpy or tensor) -> (S, d) scorer inputs on the
        model's device, `chunk` frames at a time (with gradients when the encoders train)."""
        device = self.mean.device
        out = []
        for start in range(0, len(frames), chunk):
            part = torch.as_tensor(frames[start:start + chunk]).to(device)
            feats = [self.video.cls(self.pixels(part[None])[0])]
            if self.cfg.scorer.use_motion:
                moving = torch.as_tensor(motion_frames[start:start + chunk]).to(device)
                feats.append(self.motion.cls(self.pixels(moving[None])[0]))
            out.append(torch.cat(feats, dim=-1))
        return torch.cat(out)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for b in (self.video, self.motion) for p in b.encoder.parameters() if p.requires_grad]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return interface.trainable_state(self)

    def collator(self) -> "FrameTensorCollator":
        return FrameTensorCollator()


class FrameTensorCollator:
    """(prompt, answer, frames, motion frames, motion text) samples -> this model's inputs: stacked frames, texts."""

    def __call__(self, samples: list[tuple], train: bool = True) -> dict:
        prompts, answers, frames, motion, texts = zip(*samples)
        inputs = {"frames": torch.from_numpy(np.stack(frames)), "motion_frames": torch.from_numpy(np.stack(motion)),
                  "prompts": list(prompts)}
        if train:
            inputs.update(answers=list(answers), motion_texts=list(texts))
        return {**inputs, "over_length": 0}

    def length_report(self, rows: list, n_frames: int, size: int) -> dict:
        return {}  # answers are cut at max_answer_tokens: no row can outgrow the model
