"""Typed configuration of the ATS / motion video LLM and its training recipe (one YAML or JSON file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from hivau.models.sampler import SamplerName

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScorerConfig(Strict):
    """Holmes-VAU's anomaly scorer: 1-D convolution and a small transformer over snippet features."""

    stride: int = Field(16, ge=1, description="one snippet feature every `stride` frames")
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    kernel: int = 3
    use_motion: bool = Field(True, description="also feed the motion encoder's CLS of the motion-masked frame")
    train_encoders: bool = Field(False, description="backpropagate the scorer loss into the encoders "
                                                    "(the tiny preset's encoders start from scratch)")
    epochs: int = 30
    lr: float = 1e-3
    mil_weight: float = Field(1.0, description="weight of the ranking loss for video-level-only labels")


class ModelConfig(Strict):
    vision: dict = Field(description="Hugging Face vision config (CLIP or SigLIP vision model)")
    text: dict = Field(description="Hugging Face causal LM config")
    vision_path: Optional[str] = Field(None, description="local folder of pretrained vision weights")
    text_path: Optional[str] = Field(None, description="local folder of the pretrained LM and its tokenizer")
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    n_frames: int = Field(8, ge=1, description="frames per item (N of the samplers)")
    patch_tokens: int = Field(4, description="pooled patch tokens per frame (a square number), besides its CLS")
    compress_dim: int = 64
    motion_mask: Literal["soft", "hard"] = "soft"
    motion_threshold: float = 0.2
    lm_train: Literal["lora", "full", "frozen"] = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    freeze_encoders: bool = True
    max_answer_tokens: int = 96
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)

    @property
    def frame_size(self) -> int:
        """Frames are decoded at this square size (the vision tower's input)."""
        return int(self.vision["image_size"])


class TrainConfig(Strict):
    """A training run; `hivau-train --config FILE` reads this, the command line overrides its fields."""

    release: Optional[str] = None
    out: Optional[str] = None
    preset: Optional[Literal["tiny", "pretrained", "vlm"]] = Field(
        None, description="tiny: small models built here; pretrained: preset_options vision_path and text_path; "
                          "vlm: a local Hugging Face video VLM, preset_options model_path (see VLMConfig)")
    model: Optional[ModelConfig] = None
    preset_options: dict = Field(default_factory=dict, description="keyword arguments of the preset, e.g. "
                                                                   "{image_size: 128, d_lm: 256}")
    seed: int = 0
    epochs: float = 3.0
    max_steps: Optional[int] = None
    max_minutes: Optional[float] = Field(None, description="stop (and save) after this much wall time")
    stop_at: Optional[int] = Field(None, description="stop (and save) at this step; the next run resumes exactly, "
                                                     "on the schedule of max_steps/epochs")
    scorer_epochs: Optional[int] = Field(None, description="override the model's scorer epochs (0: untrained)")
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    encoder_lr: Optional[float] = None
    weight_decay: float = 0.0
    warmup_steps: int = 20
    t1: float = Field(0.1, description="weight of L_MV (appearance-motion consistency); 0 turns it off")
    t2: float = Field(0.1, description="weight of L_ML (motion-language); 0 turns it off")
    sampler: SamplerName = Field("ats", description="frames of event and video items")
    tau: float = 0.1
    candidate_stride: int = Field(1, ge=1, description="ATS candidates: every k-th frame of the item")
    tasks: list[str] = Field(default_factory=lambda: ["caption", "judgement", "description", "analysis", "qa"])
    levels: list[str] = Field(default_factory=lambda: ["clip", "event", "video"])
    save_every: int = 200
    log_every: int = 10
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = Field(True, description="bf16 autocast on CUDA (CPU trains in float32)")
    dtype: Optional[Literal["auto", "bf16", "fp16", "fp32"]] = Field(
        None, description="weights' dtype of the vlm preset (its preset_options.dtype when not given)")
    gradient_checkpointing: Optional[bool] = Field(None, description="vlm preset: recompute activations")
    num_threads: Optional[int] = None
    workers: int = Field(2, ge=0, description="DataLoader workers that decode each step's frames")
    frame_cache: Optional[str] = Field(None, description="folder of decoded frames kept between runs (default "
                                                         "OUT/cache/frames; 'none': decode every time)")
    keep_last: Optional[int] = Field(3, ge=1, description="checkpoints kept (older ones are deleted); None: all")
    save: Literal["adapters", "merged"] = Field(
        "adapters", description="vlm preset: the final model as trainable weights over the base checkpoint, or "
                                "merged into a full Hugging Face checkpoint (model/hf/)")

    def text_path(self) -> Optional[str]:
        """Where the LM (and its tokenizer) comes from; None when the tokenizer is trained on the release."""
        if self.preset == "pretrained":
            return self.preset_options.get("text_path")
        return self.model.text_path if self.preset is None and self.model else None

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            return cls.model_validate(yaml.safe_load(text) or {})
        return cls.model_validate(json.loads(text))
