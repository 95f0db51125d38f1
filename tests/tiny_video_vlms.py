"""Tiny, randomly initialised video VLMs of real Hugging Face families, saved like a user's checkpoint folder.

Each builder writes config, weights, a byte-level BPE tokenizer trained here, the family's published chat template
(verbatim, from the sources named beside each) and its own image and video processors, so
`AutoModelForImageTextToText` and `AutoProcessor` load the folder exactly as they would load Qwen2-VL-2B-Instruct or
LLaVA-OneVision-0.5B. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

CORPUS = ("a man in a red shirt walks into the street and a white car crashes into a blue car near the door; "
          "the person falls, two people fight, smoke and fire after an explosion, nothing unusual happens. "
          "Describe the video. Is there an anomaly? What happens, who, where, when, how, why? Motion: yes no")

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
# Qwen2-VL's published chat template (Qwen/Qwen2-VL-*-Instruct chat_template.json), verbatim; Qwen2.5-VL-*-Instruct
# ships the same string. Copied from johnmai-dev/Jinja `Tests/Template tests/VisionTests.swift` (qwen2VLChatTemplate)
# and checked equal to ml-explore/mlx-swift-examples `Libraries/MLXVLM/Models/Qwen25VL.swift` (commit 5871551,
# Qwen2.5-VL's). It adds a default system turn and ends every turn "<|im_end|>\n".
QWEN_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}")

OV_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
# llava-hf's published LLaVA-OneVision chat template (llava-hf/llava-onevision-qwen2-0.5b-ov-hf chat_template.json),
# verbatim, as huggingface/transformers embeds it in `tests/models/llava_onevision/test_processing_llava_onevision.py`
# (prepare_processor_dict). Every turn opens "<|im_start|>" + role + " " while the generation prompt ends
# "<|im_start|>assistant\n", so a rendered conversation never extends the rendered prompt; turns end "<|im_end|>".
OV_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def byte_tokenizer(special: list[str], texts: Iterable[str] = (), vocab_size: int = 600, eos: str = "<|im_end|>",
                   named: dict | None = None):
    """A byte-level BPE tokenizer (any text round-trips) with the family's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CORPUS, *texts], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=special[0],
                                   extra_special_tokens=named or {})


def tiny_text_config(tokenizer, hidden: int = 64, layers: int = 2) -> dict:
    return {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
            "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": len(tokenizer),
            "max_position_embeddings": 4096, "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}


def build_tiny_qwen2_vl(folder: Path, texts: Iterable[str] = (), seed: int = 0, family: str = "qwen2_vl",
                        hidden: int = 64) -> Path:
    """Qwen2-VL (or Qwen2.5-VL with family="qwen2_5_vl"): a 2-block ViT with 2x2 patch merging, a 2-layer LM."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer = byte_tokenizer(QWEN_SPECIAL, texts)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    size = {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}  # 2x2 to 4x4 merged tokens per frame pair
    common = {"size": size, "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**common), tokenizer=tokenizer,
                                 video_processor=Qwen2VLVideoProcessor(**common, do_sample_frames=False),
                                 chat_template=QWEN_TEMPLATE)
    vision = {"depth": 2, "num_heads": 2, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
    if family == "qwen2_5_vl":
        vision.update(hidden_size=32, out_hidden_size=hidden, intermediate_size=64, fullatt_block_indexes=[1],
                      window_size=56)
    else:
        vision.update(embed_dim=32, hidden_size=hidden)
    head_dim = hidden // 2
    text = {**tiny_text_config(tokenizer, hidden), "rope_parameters": {
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [head_dim // 8, head_dim * 3 // 16,
                                                                         head_dim * 3 // 16]}}
    config = AutoConfig.for_model(family, vision_config=vision, text_config=text,
                                  image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                                  eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    torch.manual_seed(seed)
    AutoModelForImageTextToText.from_config(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_llava_onevision(folder: Path, texts: Iterable[str] = (), seed: int = 0, hidden: int = 64) -> Path:
    """LLaVA-OneVision: a 2-layer SigLIP tower (32 px, 8 px patches), its 2-layer projector, a 2-layer Qwen2 LM."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, LlavaOnevisionProcessor
    from transformers.models.llava_onevision.image_processing_llava_onevision import LlavaOnevisionImageProcessor
    from transformers.models.llava_onevision.video_processing_llava_onevision import LlavaOnevisionVideoProcessor

    tokenizer = byte_tokenizer(OV_SPECIAL, texts)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in OV_SPECIAL}
    side = {"height": 32, "width": 32}
    image_processor = LlavaOnevisionImageProcessor(size=side, crop_size=side, image_grid_pinpoints=[[32, 32]])
    video_processor = LlavaOnevisionVideoProcessor(size=side, crop_size=side, do_sample_frames=False)
    processor = LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        video_processor=video_processor, chat_template=OV_TEMPLATE,
                                        num_image_tokens=16, vision_feature_select_strategy="full")
    vision = {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 2, "image_size": 32, "patch_size": 8}
    config = AutoConfig.for_model("llava_onevision", vision_config=vision,
                                  text_config={"model_type": "qwen2", **tiny_text_config(tokenizer, hidden)},
                                  image_token_id=ids["<image>"], video_token_id=ids["<video>"],
                                  vision_feature_select_strategy="full", vision_feature_layer=-1,
                                  image_grid_pinpoints=[[32, 32]], eos_token_id=ids["<|im_end|>"],
                                  pad_token_id=ids["<|endoftext|>"])
    torch.manual_seed(seed)
    AutoModelForImageTextToText.from_config(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


BUILDERS = {"qwen2_vl": build_tiny_qwen2_vl, "llava_onevision": build_tiny_llava_onevision}


INTERNVL_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
# HF-native InternVL's published chat template (OpenGVLab/InternVL3-*-hf), verbatim: the `chat_template` that
# huggingface/transformers `src/transformers/models/internvl/convert_internvl_weights_to_hf.py` saves and pushes with
# the converted processor and tokenizer. "<video>" is expanded per frame by the processor.
INTERNVL_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "{{ '<IMG_CONTEXT>\n' }}{% elif content['type'] == 'video' %}{{ '<video>\n' }}{% elif content['type'] == 'text' %}"
    "{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{'<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}")


def build_tiny_internvl(folder: Path, texts: Iterable[str] = (), seed: int = 0, hidden: int = 64) -> Path:
    """HF-native InternVL: a 2-layer InternViT (32 px, 8 px patches), pixel shuffle, its MLP projector, a Qwen2 LM."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, InternVLProcessor
    from transformers.models.got_ocr2.image_processing_got_ocr2 import GotOcr2ImageProcessor
    from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor

    tokenizer = byte_tokenizer(INTERNVL_SPECIAL, texts, named={  # the attributes InternVLProcessor reads
        "start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>"})
    side = {"height": 32, "width": 32}
    processor = InternVLProcessor(image_processor=GotOcr2ImageProcessor(size=side, crop_to_patches=False),
                                  tokenizer=tokenizer, video_processor=InternVLVideoProcessor(size=side),
                                  image_seq_length=4, chat_template=INTERNVL_TEMPLATE)
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": [32, 32], "patch_size": [8, 8]}
    config = AutoConfig.for_model("internvl", vision_config=vision,
                                  text_config={"model_type": "qwen2", **tiny_text_config(tokenizer, hidden)},
                                  image_token_id=tokenizer.context_image_token_id, image_seq_length=4,
                                  downsample_ratio=0.5, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    AutoModelForImageTextToText.from_config(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


BUILDERS["internvl"] = build_tiny_internvl
