"""Save and load a trained model: config.json, weights (all of them, or the trainable ones over a base checkpoint),
tokenizer or processor, model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from hivau.models.config import ModelConfig

if TYPE_CHECKING:
    from hivau.models.interface import VideoLLM

MODEL_TYPE = "hivau-vlm"
VIDEO_VLM_TYPE = "hivau-video-vlm"  # the vlm preset: a pretrained Hugging Face VLM plus hivau's branches


def self_contained(model) -> ModelConfig:
    """The model's config with the architectures it actually has, so loading needs no base checkpoint."""
    vision = model.video.encoder.config.to_dict()
    text = model.lm.get_base_model().config.to_dict() if hasattr(model.lm, "get_base_model") else model.lm.config.to_dict()
    return model.cfg.model_copy(update={"vision": _clean(vision), "text": _clean(text), "vision_path": None,
                                        "text_path": None})


def _clean(config: dict) -> dict:
    drop = {"transformers_version", "architectures", "_name_or_path", "torch_dtype", "dtype", "_attn_implementation_autoset"}
    return {k: v for k, v in config.items() if k not in drop}


def save_model(model, out: str | Path, card: str, extra: dict | None = None, mode: str = "adapters") -> Path:
    """Write the model into `out` (replaced atomically: built beside it, then renamed).

    A vlm-preset model is written as its trainable weights over the base checkpoint (`adapters`), or with the
    LM's LoRA merged into a full Hugging Face checkpoint in `hf/` that any tool loads (`merged`; this merges
    the live model in place, so it is the last thing a run does)."""
    from safetensors.torch import save_file
    from safetensors.torch import save_model as save_safetensors

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if hasattr(model, "vlm"):
        cfg = model.cfg.model_dump(mode="json")
        if mode == "merged":
            if model.cfg.quantization != "none":
                raise ValueError("a quantized (QLoRA) model cannot be merged into its 4/8-bit base: save it as "
                                 "adapters, then merge over a full-precision load of the base")
            merge_lora(model.core.language_model)
            model.vlm.save_pretrained(tmp / "hf")
            model.processor.save_pretrained(tmp / "hf")
            cfg.update(model_path="hf", lm_train="frozen")
        config = {"model_type": VIDEO_VLM_TYPE, "form": mode, "hivau_vlm": cfg, **(extra or {})}
        state = {k: v.contiguous().clone() for k, v in model.trainable_state().items()
                 if not (mode == "merged" and k.startswith("vlm.model.language_model."))}
        save_file(state, str(tmp / "trainable.safetensors"))
        model.processor.save_pretrained(tmp / "processor")
    else:
        config = {"model_type": MODEL_TYPE, "hivau": self_contained(model).model_dump(mode="json"), **(extra or {})}
        save_safetensors(model, str(tmp / "model.safetensors"))
        model.tokenizer.save_pretrained(tmp / "tokenizer")  # apart: config.json here describes the whole model
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    (tmp / "README.md").write_text(card)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def merge_lora(module) -> int:
    """Fold every LoRA layer under `module` into its base weight and put the plain layer back; returns how many."""
    from peft.tuners.lora import LoraLayer

    merged = 0
    for name, layer in list(module.named_modules()):
        if isinstance(layer, LoraLayer):
            layer.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(module.get_submodule(parent_name) if parent_name else module, child, layer.get_base_layer())
            merged += 1
    return merged


def load_video_vlm(path: Path, config: dict, device: str = "cpu"):
    """A vlm-preset model: its base (or merged) checkpoint, then its trainable weights."""
    import torch
    from safetensors.torch import load_file

    from hivau.models.vlm import PretrainedVideoLLM, VLMConfig

    cfg = VLMConfig.model_validate(config["hivau_vlm"])
    base = path / cfg.model_path if config.get("form") == "merged" else Path(cfg.model_path)
    if not base.is_dir():
        raise FileNotFoundError(f"{path} was trained on the base checkpoint {base}, which is not there")
    model = PretrainedVideoLLM(cfg.model_copy(update={"model_path": str(base)}), torch.device(device))
    missing, unexpected = model.load_state_dict(load_file(str(path / "trainable.safetensors")), strict=False)
    if unexpected:
        raise ValueError(f"{path}: weights the model does not have: {unexpected[:5]}")
    return model.to(device).eval()


def load_model(path: str | Path, device: str = "cpu") -> VideoLLM:
    from safetensors.torch import load_model as load_safetensors
    from transformers import AutoTokenizer

    from hivau.models.composed_vlm import HivauVLM

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") == VIDEO_VLM_TYPE:
        return load_video_vlm(path, config, device)
    if config.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{path} is not a hivau model (config.json model_type={config.get('model_type')!r})")
    model = HivauVLM(ModelConfig.model_validate(config["hivau"]), AutoTokenizer.from_pretrained(path / "tokenizer"), pretrained=False)
    load_safetensors(model, str(path / "model.safetensors"), strict=True)
    return model.to(device).eval()


def read_config(path: str | Path) -> dict:
    return json.loads((Path(path) / "config.json").read_text())
