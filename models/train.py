"""`hivau-train`: fine-tune the ATS / motion video LLM on a release (scorer first, then the language model).

    hivau-train --release .state/workspace/releases/v0001 --preset tiny --out runs/tiny
    torchrun --nproc_per_node 2 -m hivau.models.train --config configs/tiny.yaml   # DDP (gloo on CPU)

`--stage vau-sft` and `--stage vau-grpo` train the vlm preset's checkpoint on the release's verifiable tasks
instead (reasoning-chain SFT, then TRL's GRPOTrainer on hivau's rewards): see `hivau.models.vau_policy`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from hivau.models.composed_vlm import HivauVLM
from hivau.models.config import ModelConfig, TrainConfig
from hivau.models.data import FrameStore, ItemFrames, StepInputs, motion_targets, video_labels
from hivau.models.inference import (
    frame_plan,
    frame_store,
    frozen_features,
    quiet_worker,
    snippet_features_of,
    to_device,
)
from hivau.models.interface import MOTION_PROMPT, VideoLLM
from hivau.models.io import save_model
from hivau.models.presets import pretrained, tiny, train_tokenizer
from hivau.models.sampler import SAMPLER_NAMES
from hivau.models.scorer import mil_ranking, snippet_bce, snippet_targets
from hivau.models.vau_policy import STAGES
from hivau.models.vau_policy import main as train_vau_policy
from hivau.models.vlm import PretrainedVideoLLM, VLMConfig
from hivau.schemas.records import InstructionRow, read_release_rows
from hivau.stopping import (
    Stopped,
    check_stop,
    resume_command,
    set_activity,
    stop_message,
    stop_on_signals,
    stop_requested,
)
from hivau.workspace import atomic_target, atomic_write_bytes


# ---------------------------------------------------------------- set-up
def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); starts a process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def log(out: Path, rank: int, record: dict) -> None:
    if rank != 0:
        return
    line = json.dumps(record)
    print(line, flush=True)
    with open(out / "train_log.jsonl", "a") as fh:
        fh.write(line + "\n")


def build_tokenizer(cfg: TrainConfig, rows: list[InstructionRow], motion: dict[str, str]):
    """A pretrained LM brings its tokenizer; small models built here get one trained on the release's text."""
    if cfg.text_path():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(cfg.text_path())
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok
    texts = [t for r in rows for t in (r.prompt, r.answer)] + list(motion.values()) + [MOTION_PROMPT]
    return train_tokenizer(sorted(set(texts)), vocab_size=2000)


def vlm_config(cfg: TrainConfig):
    """The vlm preset's settings: preset_options, with --dtype, --gradient-checkpointing and --scorer-epochs."""
    vcfg = VLMConfig.model_validate(cfg.preset_options)
    update = {k: getattr(cfg, k) for k in ("dtype", "gradient_checkpointing") if getattr(cfg, k) is not None}
    if cfg.scorer_epochs is not None:
        update["scorer"] = vcfg.scorer.model_copy(update={"epochs": cfg.scorer_epochs})
    return vcfg.model_copy(update=update)


def build_model(cfg: TrainConfig, rows: list[InstructionRow], motion: dict[str, str], device) -> VideoLLM:
    """The model a run trains: a pretrained video VLM (vlm preset), or encoders and an LM joined by projectors."""
    if cfg.preset == "vlm":
        return PretrainedVideoLLM(vlm_config(cfg), device).to(device)
    tokenizer = build_tokenizer(cfg, rows, motion)
    return HivauVLM(model_config(cfg, len(tokenizer)), tokenizer).to(device)


def model_config(cfg: TrainConfig, vocab_size: int) -> ModelConfig:
    if cfg.preset == "tiny":
        model = tiny(vocab_size, **cfg.preset_options)
    elif cfg.preset == "pretrained":
        model = pretrained(**cfg.preset_options)
    elif cfg.model is None:
        raise ValueError("give --preset tiny or a config file with a `model:` section")
    else:
        model = cfg.model
    if cfg.scorer_epochs is not None:
        model = model.model_copy(update={"scorer": model.scorer.model_copy(update={"epochs": cfg.scorer_epochs})})
    return model


# ---------------------------------------------------------------- stage 1: the anomaly scorer
def train_scorer(model, store: FrameStore, release: Path, cfg: TrainConfig, device, out: Path, rank: int) -> dict:
    """Per-snippet BCE on videos whose events are known; MIL ranking for anomalous videos without events.

    Videos are read one at a time (frames from the frame cache, or frozen features from disk). Every rank runs
    the same deterministic loop (it is small), so the ranks agree without communicating.
    """
    scfg = model.cfg.scorer
    videos = video_labels(release, "train")
    if not videos:
        return {"scorer_videos": 0}
    frozen = frozen_features(model, store, out, device)
    params = list(model.scorer.parameters()) + (model.encoder_parameters() if scfg.train_encoders else [])
    optimizer = torch.optim.AdamW(params, lr=scfg.lr)
    normal = [i for i, v in enumerate(videos) if not v.is_anomaly]
    gen = torch.Generator().manual_seed(cfg.seed)
    last = {}
    for epoch in range(scfg.epochs):
        set_activity(f"the scorer stage, epoch {epoch + 1} of {scfg.epochs} (it is short and not checkpointed: a "
                     f"stopped run starts it again)")
        check_stop()
        total = 0.0
        for i in torch.randperm(len(videos), generator=gen).tolist():
            v = videos[i]
            flip = frozen is None and bool(torch.rand((), generator=gen) < 0.5)
            feats = snippet_features_of(model, store, v.media, frozen, flip).to(device)
            logits = model.scorer(feats[None])[0]
            if v.weakly_labelled:
                if not normal:
                    continue
                j = normal[int(torch.randint(len(normal), (1,), generator=gen))]
                other = snippet_features_of(model, store, videos[j].media, frozen).to(device)
                loss = scfg.mil_weight * mil_ranking(logits, model.scorer(other[None])[0])
            else:
                count, fps = store.length(v.media)
                target = torch.from_numpy(snippet_targets(len(feats), scfg.stride, fps, v.events)).to(device)
                loss = snippet_bce(logits, target, torch.ones_like(target))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        last = {"stage": "scorer", "epoch": epoch + 1, "loss": round(total / len(videos), 5)}
        if (epoch + 1) % 10 == 0 or epoch + 1 == scfg.epochs:
            log(out, rank, last)
    return {"scorer_videos": len(videos), "scorer_weak": sum(v.weakly_labelled for v in videos),
            "scorer_epochs": last.get("epoch", 0), "scorer_loss": last.get("loss")}


# ---------------------------------------------------------------- stage 2: the video LLM
def step_loader(dataset, steps: range, workers: int):
    """A DataLoader over optimiser steps: each element is one step's collated micro-batches."""
    return torch.utils.data.DataLoader(dataset, sampler=steps, batch_size=None, num_workers=workers,
                                       worker_init_fn=quiet_worker if workers else None,
                                       prefetch_factor=2 if workers else None)


def micro_batches(n_rows: int, step: int, cfg: TrainConfig, rank: int, world: int, steps_per_epoch: int):
    """Row indices of each micro-batch of one optimiser step: a function of (seed, step) only, so that a
    resumed run sees exactly the batches the uninterrupted one would."""
    epoch, within = divmod(step, steps_per_epoch)
    order = np.random.default_rng([cfg.seed, epoch]).permutation(n_rows)
    per_step = cfg.batch_size * cfg.grad_accum * world
    chunk = order[within * per_step:(within + 1) * per_step]
    for m in range(cfg.grad_accum):
        start = (m * world + rank) * cfg.batch_size
        yield chunk[start:start + cfg.batch_size].tolist()


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model, cfg: TrainConfig):
    encoders = model.encoder_parameters()
    ids = {id(p) for p in encoders}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": rest, "lr": cfg.lr}]
    if encoders:
        groups.append({"params": encoders, "lr": cfg.encoder_lr or cfg.lr})
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


def save_checkpoint(out: Path, step: int, model, optimizer, scheduler, meta: dict,
                    keep_last: Optional[int] = None) -> None:
    """Trainable weights (and the scorer), optimiser, schedule and RNG states; the frozen base is not copied."""
    path = out / "checkpoints" / f"step-{step:07d}.pt"
    state = {"step": step, "model": model.trainable_state(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                                                         "torch": torch.get_rng_state()}, "meta": meta}
    with atomic_target(path) as tmp:
        torch.save(state, tmp)
    atomic_write_bytes(out / "checkpoints" / "latest", path.name.encode())
    if keep_last:
        prune_checkpoints(out / "checkpoints", keep_last)


def prune_checkpoints(folder: Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest checkpoints (after the newest is safely written and pointed to)."""
    old = sorted(folder.glob("step-*.pt"))[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def latest_checkpoint(out: Path) -> Optional[Path]:
    pointer = out / "checkpoints" / "latest"
    return out / "checkpoints" / pointer.read_text().strip() if pointer.is_file() else None


def restore(path: Path, model, optimizer, scheduler) -> int:
    state = torch.load(path, map_location="cpu", weights_only=False)
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    trainable = set(model.trainable_state())
    if unexpected or trainable & set(missing):
        raise ValueError(f"{path} does not fit this model: unexpected {unexpected[:5]}, "
                         f"missing trainable {sorted(trainable & set(missing))[:5]}")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    return int(state["step"])


def weights_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_card(cfg: TrainConfig, model_cfg: ModelConfig, summary: dict) -> str:
    return "\n".join([
        "# hivau video LLM", "",
        "An ATS / motion-aware video LLM (Holmes-VAU sampler, HAWK motion branch) trained by `hivau-train`.", "",
        f"- release: `{cfg.release}`",
        f"- preset: `{cfg.preset or 'config'}`; LM training: `{model_cfg.lm_train}`; base: "
        f"`{getattr(model_cfg, 'model_path', None) or 'built here'}`",
        f"- frames per item: {model_cfg.n_frames} ({cfg.sampler} for events and videos, uniform for clips)",
        f"- loss: L_VL + {cfg.t1} L_MV + {cfg.t2} L_ML; steps: {summary.get('steps')}; seconds: {summary.get('seconds')}",
        "", "Load with `hivau.models.io.load_model(path)`; evaluate with `hivau-eval --model PATH --release DIR`.", ""])


class TrainRecipe:
    """`hivau-train` as a recipe: set-up, data, model, optimiser (after the scorer stage), the step loop and its
    checkpoints, each a method; `run()` goes through them in order. One instance per process (DDP rank)."""

    def __init__(self, cfg: TrainConfig):
        if not cfg.release or not cfg.out:
            raise ValueError("a release folder and an output folder are required (--release, --out)")
        self.cfg, self.release, self.out = cfg, Path(cfg.release).resolve(), Path(cfg.out).resolve()
        if not (self.release / "manifest.json").is_file():
            raise FileNotFoundError(f"{self.release} is not a hivau release (no manifest.json)")
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.rank, self.world, self.device = setup_distributed(cfg.device)
        self.out.mkdir(parents=True, exist_ok=True)
        seed_everything(cfg.seed)
        self.started = time.time()
        self.step, self.report = 0, {}

    def log(self, record: dict) -> None:
        log(self.out, self.rank, record)

    def setup_data(self) -> None:
        """The release's training rows and their motion-phrase targets."""
        cfg = self.cfg
        self.rows = read_release_rows(self.release, "train", cfg.levels, cfg.tasks, by_id=True)
        if not self.rows:
            raise ValueError(f"{self.release} has no training rows for levels {cfg.levels} and tasks {cfg.tasks}")
        self.motion = motion_targets(self.rows)
        per_step = cfg.batch_size * cfg.grad_accum * self.world
        self.steps_per_epoch = max(1, len(self.rows) // per_step)
        self.total = cfg.max_steps if cfg.max_steps is not None else max(1, int(cfg.epochs * self.steps_per_epoch))

    def setup_model(self) -> None:
        """The model, its frame store, and (vlm preset) how long the rows are in its tokens."""
        self.model = build_model(self.cfg, self.rows, self.motion, self.device)
        self.store = frame_store(self.cfg, self.model, self.out)
        model_cfg = self.model.cfg
        self.lengths = self.model.collator().length_report(self.rows, model_cfg.n_frames, model_cfg.frame_size)
        if self.lengths:
            self.log({"stage": "lengths", **self.lengths})

    def setup_optimizer(self) -> None:
        """Stage 1 (the scorer) on a fresh run; then the optimiser and schedule of stage 2, resumed when a
        checkpoint exists (its scorer is restored with it)."""
        checkpoint = latest_checkpoint(self.out)
        if checkpoint is None:
            self.report = train_scorer(self.model, self.store, self.release, self.cfg, self.device, self.out, self.rank)
        self.model.scorer.requires_grad_(False)  # stage 2 trains the language side only
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_at(s, self.total, self.cfg))
        if checkpoint:
            self.step = restore(checkpoint, self.model, self.optimizer, self.scheduler)
            self.log({"resumed_from": checkpoint.name, "step": self.step})

    def setup_loader(self):
        """Which frames each item gets, then a loader of whole optimiser steps from `self.step` on."""
        cfg, model = self.cfg, self.model
        frozen = frozen_features(model, self.store, self.out, self.device)
        plan = frame_plan(model, self.store, self.release, self.rows, cfg, self.device, frozen=frozen)
        dataset = StepInputs(ItemFrames(self.rows, plan, self.store, model.cfg.n_frames, self.motion),
                             model.collator(), lambda k: list(micro_batches(len(self.rows), k, cfg, self.rank,
                                                                            self.world, self.steps_per_epoch)))
        self.ddp = model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True, device_ids=ids)
        return step_loader(dataset, range(self.step, min(self.total, cfg.stop_at or self.total)), cfg.workers)

    def train_step(self, micro: list[dict]) -> dict[str, float]:
        """One optimiser step over its micro-batches; returns the mean of each loss term."""
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda" and self.cfg.bf16)
        self.optimizer.zero_grad(set_to_none=True)
        sums = {"total": 0.0, "vl": 0.0, "mv": 0.0, "ml": 0.0}
        for m, inputs in enumerate(micro):
            inputs.pop("over_length")
            # DDP averages gradients on the last micro-batch only
            last = m == len(micro) - 1
            accumulate = self.ddp.no_sync() if self.world > 1 and not last else contextlib.nullcontext()
            with accumulate, autocast:
                losses = self.ddp(**to_device(inputs, self.device), t1=self.cfg.t1, t2=self.cfg.t2)
                (losses.total / len(micro)).backward()
            for k, v in losses.as_floats().items():
                sums[k] += v / len(micro)
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return sums

    def save_checkpoint(self) -> None:
        save_checkpoint(self.out, self.step, self.model, self.optimizer, self.scheduler,
                        {"release": str(self.release), "world": self.world}, self.cfg.keep_last)

    def train(self) -> None:
        """Stage 2: the step loop, logging and checkpointing as configured, until the last step or `max_minutes`."""
        cfg = self.cfg
        loader = self.setup_loader()
        self.model.train()
        for micro in loader:
            set_activity(f"step {self.step} of {self.total}")
            if stop_requested():  # Ctrl-C or SIGTERM: end at this step boundary; run() saves the checkpoint
                self.log({"stopped": "signal", "step": self.step})
                break
            if cfg.max_minutes and time.time() - self.started > cfg.max_minutes * 60:
                self.log({"stopped": "max_minutes", "step": self.step})
                break
            sums = self.train_step(micro)
            if self.step % cfg.log_every == 0 or self.step == self.total:
                self.log({"stage": "vlm", "step": self.step, "lr": self.scheduler.get_last_lr()[0],
                          **{k: round(v, 4) for k, v in sums.items()},
                          "elapsed_s": round(time.time() - self.started, 1)})
            if self.rank == 0 and self.step % cfg.save_every == 0:
                self.save_checkpoint()

    def finish(self) -> dict:
        """The last checkpoint, the final model and its card (rank 0); each rank's weight digest under DDP."""
        summary = {"steps": self.step, "seconds": round(time.time() - self.started, 1), "rows": len(self.rows),
                   "world": self.world, "device": str(self.device), **self.lengths, **self.report}
        if self.world > 1:  # each rank records a digest of its weights: DDP keeps them identical
            (self.out / f"rank{self.rank}.json").write_text(json.dumps({"rank": self.rank,
                                                                         "digest": weights_digest(self.model)}))
        if self.rank == 0:
            self.save_checkpoint()
            save_model(self.model, self.out / "model", model_card(self.cfg, self.model.cfg, summary),
                       mode=self.cfg.save, extra={"release": str(self.release),
                                                  "train": self.cfg.model_dump(mode="json", exclude={"model"}),
                                                  "summary": summary})
        if self.world > 1:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        return summary

    def run(self) -> dict:
        self.setup_data()
        self.setup_model()
        self.setup_optimizer()
        self.train()
        if stop_requested():
            if self.rank == 0:
                self.save_checkpoint()
            set_activity(f"step {self.step} of {self.total} (checkpoint {self.out / 'checkpoints'}/"
                         f"step-{self.step:07d}.pt saved)")
            check_stop()
        return self.finish()


def train(cfg: TrainConfig) -> dict:
    """Train on a release as `cfg` says; returns the run summary (also in OUT/model's card and config)."""
    return TrainRecipe(cfg).run()


def parse_args(argv=None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="hivau-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML or JSON TrainConfig; the flags below override it")
    parser.add_argument("--stage", choices=("hawk", *STAGES), help="hawk (default): this recipe; vau-sft, "
                        "vau-grpo: the verifiable tasks' policy (hivau-train --stage vau-sft --help)")
    parser.add_argument("--release")
    parser.add_argument("--out")
    parser.add_argument("--preset", choices=["tiny", "pretrained", "vlm"])
    parser.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"])
    parser.add_argument("--gradient-checkpointing", action="store_true", default=None)
    parser.add_argument("--save", choices=["adapters", "merged"], help="vlm preset: the final model's form")
    for name, kind in [("seed", int), ("epochs", float), ("max_steps", int), ("max_minutes", float),
                       ("batch_size", int), ("grad_accum", int), ("lr", float), ("t1", float), ("t2", float),
                       ("num_threads", int), ("save_every", int), ("log_every", int),
                       ("stop_at", int), ("scorer_epochs", int), ("workers", int), ("keep_last", int),
                       ("frame_cache", str)]:
        parser.add_argument("--" + name.replace("_", "-"), type=kind, dest=name)
    parser.add_argument("--sampler", choices=SAMPLER_NAMES)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--preset-options", type=json.loads, help='JSON, e.g. \'{"image_size": 128}\'')
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    args.pop("stage", None)
    base = TrainConfig.load(args.pop("config")).model_dump(exclude_unset=True) if "config" in args else {}
    return TrainConfig.model_validate({**base, **args})


def main(argv=None) -> None:
    stage = argparse.ArgumentParser(add_help=False)
    stage.add_argument("--stage", choices=("hawk", *STAGES), default="hawk")
    vau = stage.parse_known_args(argv)[0].stage in STAGES
    try:
        with stop_on_signals(interrupt=False):  # the step loop checks the flag and stops with a checkpoint
            if vau:
                return train_vau_policy(argv)
            summary = train(parse_args(argv))
    except Stopped as exc:
        print(stop_message("hivau-train", resume_command(), exc, kept="The next run resumes from that checkpoint "
                           "exactly."), file=sys.stderr)
        sys.exit(exc.exit_code)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"done": summary}))


if __name__ == "__main__":
    main()
