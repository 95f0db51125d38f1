"""The verifiable tasks' policy: a `--preset vlm` checkpoint answering a release's `vau/` tasks, fine-tuned on
think-then-answer targets (`--stage vau-sft`), then by TRL's GRPOTrainer on hivau's rewards (`--stage vau-grpo`),
and scored by those same rewards.

    hivau-train --stage vau-sft --release R --preset-options '{"model_path": "M"}' --out runs/sft --max-steps 200
    hivau-train --stage vau-grpo --release R --preset-options '{"model_path": "M"}' --init runs/sft/adapters \\
        --out runs/grpo --max-steps 100

The item's frames go in as images, one block each before the question, because that is what TRL 1.16's
GRPOTrainer gives a VLM (it takes no video); the same prompt is used in every stage and at scoring, so the stages
chain. HAWK's motion branch has no place in that prompt: this policy is the checkpoint's own model with LoRA
adapters on its language model, saved in PEFT's format (`OUT/adapters/`), which the next stage, `--init` and any
peft user load. Grounding prompts say the time of each frame, so that an answer in seconds can be read off them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

import torch
from pydantic import Field

from hivau.models.config import Strict
from hivau.models.rewards import accuracy_reward, format_reward, iou_reward, vau_metrics
from hivau.models.vlm import answer_frame
from hivau.prompts.vau import rl_prompt, sft_target
from hivau.schemas.records import VauTask, VauTaskRow, read_release_rows, read_vau_rows
from hivau.stopping import check_stop, set_activity, stop_requested

STAGES = ("vau-sft", "vau-grpo")
# what a stage reports before and after: the learning check's figures
HEADLINE = {"format": lambda m: m["format"]["well_formed"],
            "choice accuracy": lambda m: m.get("choice", {}).get("accuracy"),
            "grounding mIoU": lambda m: m.get("grounding", {}).get("anomalous", {}).get("mIoU")}
REWARDS = (format_reward, accuracy_reward, iou_reward)
# families whose several images per prompt TRL 1.16's GRPOTrainer splits wrongly (grpo_trainer.py,
# `_get_per_token_logps_and_entropies`: LLaVA-OneVision's pixel tensors are per prompt, its `image_sizes` per image)
GRPO_ONE_IMAGE = ("llava_onevision",)


class VauPolicyConfig(Strict):
    """One stage of the policy's training (the command line sets these; `--config` reads them from a file)."""

    stage: Literal["vau-sft", "vau-grpo"]
    release: str
    out: str
    model_path: str = Field(description="local folder of a Hugging Face image-text-to-text checkpoint")
    init: Optional[str] = Field(None, description="adapters/ of an earlier stage to start from (else new LoRA)")
    tasks: list[VauTask] = Field(default_factory=lambda: ["choice", "grounding", "classify", "detect"])
    n_frames: int = Field(8, ge=1, description="frames per task, spread uniformly over its media")
    short_side: int = Field(224, description="frames are scaled down to this shorter side; the processor resizes")
    think: bool = Field(True, description="prompts ask for <think>..</think> before the answer, and SFT targets put "
                                          "the item's released chain there where it has one; off: answers alone")
    lora_r: int = 16
    lora_alpha: int = 32
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
                                    description="the language model's linear layers that get LoRA adapters")
    modules_to_save: list[str] = Field(default_factory=list, description="modules trained whole beside the adapters "
                                                                         "and saved with them, e.g. [lm_head]")
    max_steps: int = 100
    log_every: int = Field(25, ge=1, description="SFT steps between printed losses")
    batch_size: int = Field(4, description="tasks per optimizer step (SFT); prompts per step (GRPO)")
    lr: float = 1e-4
    seed: int = 0
    num_generations: int = Field(4, ge=2, description="GRPO: completions per prompt (its group)")
    max_completion_length: int = Field(256, description="GRPO: longest completion")
    temperature: float = 1.0
    beta: float = Field(0.0, description="GRPO: KL weight against the start (0: no reference model, TRL's default)")
    max_new_tokens: int = Field(256, description="longest answer when scoring")
    eval_per_task: Optional[int] = Field(None, ge=1, description="score the first N test tasks of each kind "
                                                                  "(release order); None: all")
    score_before: bool = Field(True, description="also score the starting policy (off: a stage that starts where "
                                                 "the last one was scored)")
    device: Literal["auto", "cpu", "cuda"] = "auto"


# ---------------------------------------------------------------- prompts and frames
def frame_times_line(times: list[float]) -> str:
    return "The frames are at " + ", ".join(f"{t:.1f}" for t in times) + " s of the video."


def task_prompt(task: VauTaskRow, times: list[float], think: bool = True) -> str:
    """The question and the output format it asks for (the release's `rl_prompt`); grounding also says when each
    frame was taken, in seconds of the video its answer is about."""
    text = rl_prompt(task, think=think)
    return f"{frame_times_line(times)}\n{text}" if task.task == "grounding" else text


def user_turn(text: str, n_images: int) -> list[dict]:
    """The conversation TRL builds from a `prompt` and its `images`: one image block per frame, then the text."""
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]


@lru_cache(maxsize=4096)
def task_frames(path: str, n: int, short_side: int) -> tuple[tuple, tuple[float, ...]]:
    """(frames as PIL images, their times in seconds of the file): n spread uniformly over the media."""
    from PIL import Image

    from hivau.tasks.build.frames import sample_frames

    sampled = sample_frames(path, n=n, short_side=short_side)
    return tuple(Image.fromarray(f) for f in sampled.frames), tuple(sampled.times_s)


def chains_of(release: Path) -> dict[str, str]:
    """item id -> its released reasoning chain (both splits: a task's own item decides, not its split)."""
    return {r.item_id: r.answer for split in ("train", "test")
            for r in read_release_rows(release, split) if r.task == "reasoning"}


def first_of_each(tasks: list[VauTaskRow], n: Optional[int]) -> list[VauTaskRow]:
    """The first n tasks of each kind, in release order (all when n is None)."""
    seen: dict[str, int] = {}
    kept = []
    for t in tasks:
        seen[t.task] = seen.get(t.task, 0) + 1
        if n is None or seen[t.task] <= n:
            kept.append(t)
    return kept


def examples(cfg: VauPolicyConfig, split: str) -> list[dict]:
    """One example per task of the split (the test split's first `eval_per_task` of each kind): the task, its frames
    and their times, the prompt, the SFT target."""
    release = Path(cfg.release)
    chains = chains_of(release) if cfg.think else {}
    tasks = read_vau_rows(release, split, tasks=cfg.tasks)
    out = []
    for task in first_of_each(tasks, cfg.eval_per_task if split == "test" else None):
        images, times = task_frames(str(release / task.media_path), cfg.n_frames, cfg.short_side)
        chain = chains.get(task.item_id)
        out.append({"task": task, "images": list(images), "prompt": task_prompt(task, list(times), think=cfg.think),
                    "sft_prompt": task_prompt(task, list(times), think=cfg.think and chain is not None),
                    "target": sft_target(task, chain)})
    return out


# ---------------------------------------------------------------- the policy
def device_of(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def load_policy(cfg: VauPolicyConfig, adapters: Optional[str], trainable: bool):
    """(model with LoRA on its LM, processor): new adapters, or those saved in `adapters`."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(cfg.model_path)
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    base = AutoModelForImageTextToText.from_pretrained(cfg.model_path)
    if adapters:
        return PeftModel.from_pretrained(base, adapters, is_trainable=trainable), processor
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, bias="none",
                      target_modules=_lm_targets(base, cfg.lora_targets), modules_to_save=cfg.modules_to_save or None)
    return get_peft_model(base, lora), processor


def _lm_targets(model, names: list[str]) -> list[str]:
    """The full names of the language model's projections called `names` (not the vision tower's)."""
    lm = model.model.language_model
    prefix = next(n for n, m in model.named_modules() if m is lm)
    return [f"{prefix}.{n}" for n, m in lm.named_modules() if n.split(".")[-1] in names
            and isinstance(m, torch.nn.Linear)]


def encode(processor, text: str, images: list, target: Optional[str] = None) -> dict:
    """Model inputs of one prompt (and, for SFT, labels on the target and its end of turn alone): the target follows
    the generation prompt as inference gives it, framed as the chat template frames an assistant turn."""
    prompt = processor.apply_chat_template(user_turn(text, len(images)), add_generation_prompt=True, tokenize=False)
    if target is None:
        full = prompt
    else:
        before, after = answer_frame(processor)
        full = prompt + before + target + after
    enc = processor(text=[full], images=images or None, return_tensors="pt")
    if target is not None:
        n_prompt = processor(text=[prompt], images=images or None, return_tensors="pt")["input_ids"].shape[1]
        labels = enc["input_ids"].clone()
        labels[:, :n_prompt] = -100
        enc["labels"] = labels
    return dict(enc)


@torch.inference_mode()
def answer(model, processor, example: dict, max_new_tokens: int) -> str:
    """The policy's greedy answer to one task, as scoring reads it."""
    model.eval()
    inputs = {k: v.to(model.device) for k, v in encode(processor, example["prompt"], example["images"]).items()}
    tok = processor.tokenizer
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def score(model, processor, items: list[dict], max_new_tokens: int) -> tuple[dict, dict[str, str]]:
    """hivau's metrics of the policy's answers (MC accuracy, grounding mIoU, ...), and the answers by task id."""
    answers = {}
    for e in items:
        check_stop()  # scoring is not checkpointed: a stopped stage scores again from its checkpoint
        answers[e["task"].id] = answer(model, processor, e, max_new_tokens)
    return vau_metrics([e["task"] for e in items], answers), answers


# ---------------------------------------------------------------- the stages
def train_sft(model, processor, items: list[dict], cfg: VauPolicyConfig) -> list[dict]:
    """Supervised steps on the targets: `batch_size` tasks per step (one at a time, gradients added up). Resumes
    from OUT/checkpoint; a stop (Ctrl-C, SIGTERM) ends it at a step boundary with a checkpoint written there."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr)
    order, log, start = random.Random(cfg.seed), [], 0
    if (state := sft_state(Path(cfg.out))) is not None:
        optimizer.load_state_dict(state["optimizer"])
        order.setstate(state["order"])
        log, start = state["log"], state["step"]
        print(json.dumps({"resumed_from": state["step"]}), flush=True)
    model.train()
    for step in range(start, cfg.max_steps):
        set_activity(f"SFT step {step} of {cfg.max_steps}")
        if stop_requested():
            save_sft_checkpoint(Path(cfg.out), model, {"optimizer": optimizer.state_dict(), "order": order.getstate(),
                                                       "log": log, "step": step})
            check_stop()
        batch = [items[order.randrange(len(items))] for _ in range(cfg.batch_size)]
        total = 0.0
        for e in batch:
            inputs = {k: v.to(model.device) for k, v in encode(processor, e["sft_prompt"], e["images"], e["target"]).items()}
            loss = model(**inputs).loss / len(batch)
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        log.append({"step": step + 1, "loss": round(total, 5)})
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.max_steps:
            print(json.dumps(log[-1]), flush=True)
    if start < cfg.max_steps:  # the trained state, so a stop while scoring it does not cost the training
        save_sft_checkpoint(Path(cfg.out), model, {"optimizer": optimizer.state_dict(), "order": order.getstate(),
                                                   "log": log, "step": cfg.max_steps})
    return log


def save_sft_checkpoint(out: Path, model, state: dict) -> None:
    """OUT/checkpoint: the adapters and what the loop needs to go on exactly (optimizer, step, task order), written
    beside and swapped in whole, so a kill while saving leaves the previous checkpoint."""
    tmp, final = out / ".checkpoint.tmp", out / "checkpoint"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "adapters")
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    set_activity(f"SFT step {state['step']} of the run (checkpoint {final} saved)")


def sft_state(out: Path) -> Optional[dict]:
    path = out / "checkpoint" / "state.pt"
    return torch.load(path, weights_only=False) if path.is_file() else None


class StopAtStep:
    """TRL's trainer, told by a stop (Ctrl-C, SIGTERM) to save a checkpoint after this step and end."""

    def __init__(self):
        from transformers import TrainerCallback

        # a TrainerCallback subclass made here: transformers is imported only by the stages that train
        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                set_activity(f"GRPO step {state.global_step} of {state.max_steps}")
                if stop_requested():
                    control.should_save = control.should_training_stop = True
                elif state.global_step >= state.max_steps:  # so a stop while scoring does not cost the training
                    control.should_save = True
                return control

        self.callback = Callback()


def check_grpo_support(model, cfg: VauPolicyConfig) -> None:
    """Refuse, before any work, what TRL 1.16's GRPOTrainer gets wrong."""
    family = model.base_model.model.config.model_type
    if family in GRPO_ONE_IMAGE and cfg.n_frames > 1:
        raise SystemExit(f"{cfg.model_path}: TRL 1.16's GRPOTrainer cannot score {family} prompts of several images "
                         f"(it slices their pixels by prompt and their image sizes by image); use n_frames 1, or "
                         f"a Qwen2-VL, Qwen2.5-VL or InternVL checkpoint")


def train_grpo(model, processor, items: list[dict], cfg: VauPolicyConfig) -> list[dict]:
    """TRL's GRPOTrainer on the tasks with hivau's rewards; returns its log."""
    try:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as exc:
        raise SystemExit(f"--stage vau-grpo needs TRL: pip install -e '.[rl]' ({exc})") from exc


    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": e["prompt"]}], "images": e["images"],
                               "id": e["task"].id, "task": e["task"].task, "solution": e["task"].solution,
                               "options": list(e["task"].options), "duration_s": e["task"].duration_s}
                              for e in items])
    cpu = model.device.type == "cpu"
    args = GRPOConfig(output_dir=str(Path(cfg.out) / "grpo"), per_device_train_batch_size=cfg.batch_size,
                      num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                      temperature=cfg.temperature, beta=cfg.beta, max_steps=cfg.max_steps, learning_rate=cfg.lr,
                      use_cpu=cpu, bf16=not cpu and torch.cuda.is_bf16_supported(), report_to=[],
                      save_strategy="no", logging_steps=1, seed=cfg.seed, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=model, processing_class=processor, reward_funcs=list(REWARDS), args=args,
                          train_dataset=rows, callbacks=[StopAtStep().callback])
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if last:
        print(json.dumps({"resumed_from": Path(last).name}), flush=True)
    trainer.train(resume_from_checkpoint=last)
    if stop_requested():
        set_activity(f"GRPO step {trainer.state.global_step} of {cfg.max_steps} (checkpoint "
                     f"{get_last_checkpoint(args.output_dir)} saved)")
        check_stop()
    return [r for r in trainer.state.log_history if "reward" in r]


def run(cfg: VauPolicyConfig) -> dict:
    """One stage: score the start on the test tasks, train, score again, save the adapters and a summary."""
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # a stopped SFT stage goes on from its checkpoint's adapters (GRPO's checkpoint is TRL's, resumed by it)
    resumed = out / "checkpoint" / "adapters" if cfg.stage == "vau-sft" else None
    model, processor = load_policy(cfg, str(resumed) if resumed and resumed.is_dir() else cfg.init, trainable=True)
    if cfg.stage == "vau-grpo":
        check_grpo_support(model, cfg)
    model.to(device_of(cfg.device))
    train, test = examples(cfg, "train"), examples(cfg, "test")
    if not train:
        raise SystemExit(f"{cfg.release}: no verifiable tasks of {cfg.tasks} in vau/train.parquet")
    started = time.monotonic()
    before = starting_score(model, processor, test, cfg, out)
    log = (train_sft if cfg.stage == "vau-sft" else train_grpo)(model, processor, train, cfg)
    after, answers = score(model, processor, test, cfg.max_new_tokens)
    model.save_pretrained(out / "adapters")
    processor.save_pretrained(out / "adapters")
    summary = {"stage": cfg.stage, "config": cfg.model_dump(), "train_tasks": len(train), "test_tasks": len(test),
               "test_before": before, "test_after": after, "log": log, "seconds": round(time.monotonic() - started, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "predictions.jsonl").write_text("".join(json.dumps({"id": k, "answer": v}) + "\n" for k, v in answers.items()))
    return summary


def starting_score(model, processor, test: list[dict], cfg: VauPolicyConfig, out: Path) -> Optional[dict]:
    """The policy's test score before training, kept in OUT so a resumed stage reports the true start."""
    path = out / "test_before.json"
    if path.is_file():
        return json.loads(path.read_text())
    before = score(model, processor, test, cfg.max_new_tokens)[0] if cfg.score_before else None
    path.write_text(json.dumps(before))
    return before


def parse_args(argv=None) -> VauPolicyConfig:
    parser = argparse.ArgumentParser(prog="hivau-train --stage vau-sft|vau-grpo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML or JSON VauPolicyConfig; the flags below override it")
    parser.add_argument("--stage", choices=STAGES)
    parser.add_argument("--release")
    parser.add_argument("--out")
    parser.add_argument("--init", help="adapters/ of an earlier stage")
    parser.add_argument("--preset", choices=["vlm"], help="the policy is the vlm preset's checkpoint")
    parser.add_argument("--preset-options", type=json.loads, help='JSON with "model_path" (and n_frames, ...)')
    for name, kind in [("max_steps", int), ("log_every", int), ("batch_size", int), ("lr", float), ("seed", int),
                       ("n_frames", int), ("num_generations", int), ("max_completion_length", int), ("max_new_tokens", int)]:
        parser.add_argument("--" + name.replace("_", "-"), type=kind, dest=name)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    args.pop("preset", None)
    base = {}
    if "config" in args:
        import yaml

        base = yaml.safe_load(Path(args.pop("config")).read_text()) or {}
    options = {**base.pop("preset_options", {}), **args.pop("preset_options", {})}
    return VauPolicyConfig.model_validate({**base, **options, **args})


def main(argv=None) -> None:
    summary = run(parse_args(argv))
    before, after = summary["test_before"], summary["test_after"]
    for name, value in HEADLINE.items():
        print(f"{name}: {value(before) if before else 'not scored'} -> {value(after)}")
    print(f"adapters: {Path(summary['config']['out']) / 'adapters'}")
