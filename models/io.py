"""Save and load a trained model in Hugging Face layout: config.json, model.safetensors, tokenizer/, model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hivau.models.config import ModelConfig

MODEL_TYPE = "hivau-vlm"


def self_contained(model) -> ModelConfig:
    """The model's config with the architectures it actually has, so loading needs no base checkpoint."""
    vision = model.video.encoder.config.to_dict()
    text = model.lm.get_base_model().config.to_dict() if hasattr(model.lm, "get_base_model") else model.lm.config.to_dict()
    return model.cfg.model_copy(update={"vision": _clean(vision), "text": _clean(text), "vision_path": None,
                                        "text_path": None})


def _clean(config: dict) -> dict:
    drop = {"transformers_version", "architectures", "_name_or_path", "torch_dtype", "dtype", "_attn_implementation_autoset"}
    return {k: v for k, v in config.items() if k not in drop}


def save_model(model, out: str | Path, card: str, extra: dict | None = None) -> Path:
    """Write the model into `out` (replaced atomically: built beside it, then renamed)."""
    from safetensors.torch import save_model as save_safetensors

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = {"model_type": MODEL_TYPE, "hivau": self_contained(model).model_dump(mode="json"), **(extra or {})}
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    save_safetensors(model, str(tmp / "model.safetensors"))
    model.tokenizer.save_pretrained(tmp / "tokenizer")  # apart: config.json here describes the whole model
    (tmp / "README.md").write_text(card)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def load_model(path: str | Path, device: str = "cpu"):
    from safetensors.torch import load_model as load_safetensors
    from transformers import AutoTokenizer

    from hivau.models.vlm import HivauVLM

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{path} is not a hivau model (config.json model_type={config.get('model_type')!r})")
    model = HivauVLM(ModelConfig.model_validate(config["hivau"]), AutoTokenizer.from_pretrained(path / "tokenizer"), pretrained=False)
    load_safetensors(model, str(path / "model.safetensors"), strict=True)
    return model.to(device).eval()


def read_config(path: str | Path) -> dict:
    return json.loads((Path(path) / "config.json").read_text())
