"""Time one training step of a realistic configuration (CLIP ViT-L/14-336-shaped encoders, a 1.5B-class
Llama-shaped LM with LoRA, 16 frames, bf16 on CUDA) and report tokens per second.

    .venv/bin/python benchmarks/bench_train_step.py            # on a GPU machine; writes BENCHMARKS.md
    .venv/bin/python benchmarks/bench_train_step.py --small    # a CPU smoke run of the same code path

Weights are random (nothing is downloaded); the cost of a step does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402


def configs(small: bool, frames: int):
    from hivau.models.config import ModelConfig

    if small:
        vision = {"model_type": "clip_vision_model", "image_size": 64, "patch_size": 16, "hidden_size": 64,
                  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
        text = {"model_type": "llama", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4}
    else:
        vision = {"model_type": "clip_vision_model", "image_size": 336, "patch_size": 14, "hidden_size": 1024,
                  "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16}
        text = {"model_type": "llama", "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960,
                "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
                "max_position_embeddings": 4096}
    text.update(bos_token_id=0, eos_token_id=1, pad_token_id=2)
    return ModelConfig(vision=vision, text=text, n_frames=frames, lm_train="lora", freeze_encoders=True)


def main() -> None:
    import torch

    from hivau.models.composed_vlm import HivauVLM
    from hivau.models.presets import train_tokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    answer = ("A man in a dark jacket walks up to the counter, pulls out a handgun and points it at the clerk, "
              "who raises both hands and steps back while the man grabs cash from the register and runs out.")
    tok = train_tokenizer([answer, "Describe the anomaly in the video.", "Motion:"] * 4, vocab_size=500)
    cfg = configs(args.small, args.frames)
    model = HivauVLM(cfg, tok).to(device)
    size = cfg.vision["image_size"]
    frames = torch.randint(0, 255, (args.batch, args.frames, size, size, 3), dtype=torch.uint8, device=device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    prompts, answers = ["Describe the anomaly in the video."] * args.batch, [answer] * args.batch

    def step() -> int:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            losses = model(frames, frames, prompts, answers, ["man points handgun at clerk"] * args.batch)
        losses.total.backward()
        optimizer.step()
        visual = 2 * args.frames * (1 + cfg.patch_tokens)  # video and motion tokens
        return visual + 1 + len(model._ids(prompts[0])) + len(model._ids(" " + answers[0])) + 1

    for _ in range(3):
        seq = step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / args.steps
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "batch": args.batch,
              "frames": args.frames, "sequence": seq, "step_s": round(seconds, 4),
              "tokens_per_s": round(args.batch * seq / seconds, 1),
              "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "params": sum(p.numel() for p in model.parameters()),
              "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None}
    print(json.dumps(result))
    if device == "cuda" and not args.small:
        write_section("trainer-gpu", "\n".join([
            "## Training step on a GPU (`benchmarks/bench_train_step.py`)", "",
            f"{result['device']}: CLIP ViT-L/14-336-shaped appearance and motion encoders (frozen), a 1.5B-class "
            f"Llama-shaped LM with LoRA, {args.frames} frames, batch {args.batch}, bf16 autocast; "
            f"{result['sequence']} LM positions per item.", "",
            "| step | tokens/s | peak memory | trainable / all parameters |", "|---|---|---|---|",
            f"| {result['step_s']} s | {result['tokens_per_s']} | {result['peak_gib']} GiB | "
            f"{result['trainable_params']:,} / {result['params']:,} |"]))


if __name__ == "__main__":
    main()
