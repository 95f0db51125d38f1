"""The interface every trainable video LLM implements (the recipe, hivau-eval, the captioner and the model files use
nothing else), and the pieces both model classes share: loss terms, LoRA set-up, padding, the trainable state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as F

MOTION_PROMPT = "Motion:"  # the instruction L_ML's motion phrases are written after (HAWK's motion-language loss)
IGNORE = -100  # the label of positions no loss is computed on


@dataclass
class Losses:
    """Loss = L_VL + t1 L_MV + t2 L_ML (HAWK, sec. 4), with each term kept for the log."""

    total: torch.Tensor
    vl: torch.Tensor
    mv: torch.Tensor
    ml: torch.Tensor

    @classmethod
    def of(cls, vl: torch.Tensor, mv: torch.Tensor, ml: torch.Tensor, t1: float, t2: float) -> "Losses":
        return cls(vl + t1 * mv + t2 * ml, vl, mv, ml)

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "vl", "mv", "ml")}


def motion_alignment(video: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """L_MV: 1 - cos between the compressed video and motion vectors, averaged over the batch."""
    return (1 - F.cosine_similarity(video, motion, dim=-1)).mean()


def lora_config(r: int, alpha: int, targets: list[str]):
    """The LoRA adapters hivau adds (to a language model or a vision tower): no dropout, no bias."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules=targets)


def train_adapters_only(module: nn.Module) -> None:
    """Of a module with adapters injected, only the adapters train; its base weights stay as loaded."""
    for name, p in module.named_parameters():
        p.requires_grad_("lora_" in name)


def trainable_state(model: nn.Module, also: tuple[str, ...] = ("scorer.",)) -> dict[str, torch.Tensor]:
    """What a checkpoint holds: every trainable weight, and the modules named in `also` (the scorer, trained in
    stage 1 and frozen after)."""
    return {k: p.detach() for k, p in model.named_parameters() if p.requires_grad or k.startswith(also)}


def pad_span(width: int, length: int, left: bool) -> slice:
    """Where a sequence of `length` sits in a row of `width`: at the end (left padding, for generation) or the start."""
    return slice(width - length, width) if left else slice(0, length)


class Collator(Protocol):
    def __call__(self, samples: list[tuple], train: bool = True) -> dict:
        """(prompt, answer or None, frames, motion frames, motion text) samples -> the model's keyword inputs,
        plus `over_length` (rows cut at the model's context)."""

    def length_report(self, rows: list, n_frames: int, size: int) -> dict:
        """How long the rows are in the model's tokens (empty when nothing can be too long)."""


@runtime_checkable
class VideoLLM(Protocol):
    """A video LLM with HAWK's motion branch and Holmes-VAU's anomaly scorer beside it (`HivauVLM` for the tiny and
    pretrained presets, `PretrainedVideoLLM` for --preset vlm)."""

    cfg: Any  # n_frames, frame_size, motion_mask, motion_threshold and the scorer's settings
    scorer: nn.Module

    def collator(self) -> Collator:
        """Turns samples into this model's inputs (in DataLoader workers)."""

    def forward(self, *args: Any, t1: float = 0.1, t2: float = 0.1, **inputs: Any) -> Losses:
        """The three loss terms on one micro-batch of the collator's training inputs."""

    def generate(self, *args: Any, max_new_tokens: int = 256, **inputs: Any) -> list[str]:
        """Greedy answers for the collator's inference inputs."""

    def snippet_features(self, frames: Any, motion_frames: Any) -> torch.Tensor:
        """(S, H, W, 3) uint8 snippet frames and their motion frames -> (S, d) scorer inputs."""

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Trainable encoder weights (given their own learning rate)."""

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds."""
