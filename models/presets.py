"""Model presets: `tiny` builds small encoders and LM from configs, with a tokenizer trained on the release."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from hivau.models.config import ModelConfig, ScorerConfig

SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000):
    """A byte-level BPE tokenizer trained on the release's own text (decoding gives the text back exactly)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)


def tiny(vocab_size: int, image_size: int = 128, d_vision: int = 64, d_lm: int = 128, layers: int = 2,
         n_frames: int = 8) -> ModelConfig:
    """A CLIP-style vision tower and a Llama-style LM small enough to train on two CPU cores."""
    vision = {"model_type": "clip_vision_model", "image_size": image_size, "patch_size": 16, "hidden_size": d_vision,
              "intermediate_size": 2 * d_vision, "num_hidden_layers": layers, "num_attention_heads": 4,
              "num_channels": 3}
    text = {"model_type": "llama", "vocab_size": vocab_size, "hidden_size": d_lm, "intermediate_size": 2 * d_lm,
            "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 4,
            "max_position_embeddings": 512, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2,
            "tie_word_embeddings": True}
    return ModelConfig(vision=vision, text=text, n_frames=n_frames, patch_tokens=4, compress_dim=64,
                       lm_train="full", freeze_encoders=False,
                       scorer=ScorerConfig(stride=8, d_model=64, layers=2, heads=4, train_encoders=True, epochs=40))


def pretrained(vision_path: str, text_path: str, n_frames: int = 16) -> ModelConfig:
    """Local Hugging Face checkpoints (e.g. a CLIP/SigLIP vision tower and a chat LM) with LoRA on the LM."""
    from transformers import AutoConfig

    vision = AutoConfig.from_pretrained(vision_path)
    vision = getattr(vision, "vision_config", vision).to_dict()
    text = AutoConfig.from_pretrained(text_path).to_dict()
    mean, std = _image_stats(vision_path)
    return ModelConfig(vision=vision, text=text, vision_path=vision_path, text_path=text_path,
                       image_mean=mean, image_std=std, n_frames=n_frames, lm_train="lora", freeze_encoders=True)


def _image_stats(path: str):
    import json

    processor = Path(path) / "preprocessor_config.json"
    if processor.is_file():
        data = json.loads(processor.read_text())
        if "image_mean" in data and "image_std" in data:
            return tuple(data["image_mean"]), tuple(data["image_std"])
    return ModelConfig.model_fields["image_mean"].default, ModelConfig.model_fields["image_std"].default
