"""`hivau-train`: fine-tune the ATS / motion video LLM on a release (scorer first, then the language model).

    hivau-train --release .state/workspace/releases/v0001 --preset tiny --out runs/tiny
    torchrun --nproc_per_node 2 -m hivau.models.train --config configs/tiny.yaml   # DDP (gloo on CPU)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from hivau.models.config import ModelConfig, TrainConfig
from hivau.models.data import (FrameStore, ItemFrames, Row, StepInputs, motion_targets, read_rows, sampled_indices,
                               video_labels)
from hivau.models.sampler import uniform_indices
from hivau.models.sampler import scores_to_frames
from hivau.models.scorer import mil_ranking, snippet_bce, snippet_targets
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


def build_tokenizer(cfg: TrainConfig, rows: list[Row], motion: dict[str, str]):
    """A pretrained LM brings its tokenizer; small models built here get one trained on the release's text."""
    from hivau.models.presets import train_tokenizer
    from hivau.models.vlm import MOTION_PROMPT

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
    from hivau.models.hf_vlm import VLMConfig

    vcfg = VLMConfig.model_validate(cfg.preset_options)
    update = {k: getattr(cfg, k) for k in ("dtype", "gradient_checkpointing") if getattr(cfg, k) is not None}
    if cfg.scorer_epochs is not None:
        update["scorer"] = vcfg.scorer.model_copy(update={"epochs": cfg.scorer_epochs})
    return vcfg.model_copy(update=update)


def build_model(cfg: TrainConfig, rows: list[Row], motion: dict[str, str], device):
    """The model a run trains: a pretrained video VLM (vlm preset), or encoders and an LM joined by projectors."""
    if cfg.preset == "vlm":
        from hivau.models.hf_vlm import PretrainedVideoLLM

        return PretrainedVideoLLM(vlm_config(cfg), device).to(device)
    from hivau.models.vlm import HivauVLM

    tokenizer = build_tokenizer(cfg, rows, motion)
    return HivauVLM(model_config(cfg, len(tokenizer)), tokenizer).to(device)


def model_config(cfg: TrainConfig, vocab_size: int) -> ModelConfig:
    from hivau.models.presets import pretrained, tiny

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
class SnippetFeatures:
    """Frozen encoders' snippet features per media file: computed once, a chunk of frames at a time, and kept
    on disk, so that the scorer's epochs never hold a release's frames or features in memory."""

    def __init__(self, model, store: FrameStore, folder: Optional[Path], device):
        self.model, self.store, self.folder, self.device = model, store, folder, device

    def _path(self, media: Path) -> Optional[Path]:
        if self.folder is None:
            return None
        stat = media.stat()
        key = json.dumps([str(media), stat.st_size, stat.st_mtime_ns, self.model.cfg.scorer.stride])
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"

    def get(self, media: Path) -> torch.Tensor:
        path = self._path(media)
        if path is not None and path.is_file():
            return torch.from_numpy(np.load(path)).to(self.device)
        _, frames, motion = self.store.snippets(media, self.model.cfg.scorer.stride)
        with torch.no_grad():
            feats = self.model.snippet_features(frames, motion).float()
        if path is not None:
            with atomic_target(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, feats.cpu().numpy())
        return feats.to(self.device)


def snippet_features_of(model, store: FrameStore, media: Path, frozen: Optional[SnippetFeatures],
                        flip: bool = False) -> torch.Tensor:
    """A media file's scorer inputs: from the frozen cache, or through the encoders (with gradients)."""
    if frozen is not None:
        return frozen.get(media)
    _, frames, motion = store.snippets(media, model.cfg.scorer.stride)
    if flip:  # mirror: anomalies have no side
        frames, motion = np.ascontiguousarray(frames[:, :, ::-1]), np.ascontiguousarray(motion[:, :, ::-1])
    return model.snippet_features(frames, motion)


def snippet_scores(model, store: FrameStore, media: Path, device, frozen: Optional[SnippetFeatures] = None):
    """Sigmoid scores of one media file's snippets."""
    with torch.no_grad():
        feats = snippet_features_of(model, store, media, frozen).to(device)
        return torch.sigmoid(model.scorer(feats[None]))[0].float().cpu().numpy()


def frame_scores(model, store: FrameStore, media: Path, device, memo: Optional[dict] = None,
                 frozen: Optional[SnippetFeatures] = None) -> np.ndarray:
    """Per-frame scores of a media file; `memo` keeps them for callers that ask again with the same scorer."""
    if memo is not None and str(media) in memo:
        return memo[str(media)]
    n, _ = store.length(media)
    scores = scores_to_frames(snippet_scores(model, store, media, device, frozen), model.cfg.scorer.stride, n)
    if memo is not None:
        memo[str(media)] = scores
    return scores


def frozen_features(model, store: FrameStore, out: Path, device) -> Optional[SnippetFeatures]:
    """The on-disk snippet features when the scorer's encoders are frozen (None: they train with it)."""
    if model.cfg.scorer.train_encoders:
        return None
    return SnippetFeatures(model, store, out / "cache" / "snippets", device)


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
def frame_plan(model, store: FrameStore, rows: list[Row], cfg: TrainConfig, device, sampler: Optional[str] = None,
               memo: Optional[dict] = None, frozen: Optional[SnippetFeatures] = None) -> dict[str, tuple[Path, list[int]]]:
    """Which frames each item is trained on: uniform for clips, the sampler over scorer scores for events and
    videos. Only indices are kept (a few ints per item); the frames are decoded per step."""
    plan = {}
    n = model.cfg.n_frames
    for row in rows:
        if row.item_id in plan:
            continue
        count, _ = store.length(row.media)
        if row.level == "clip":
            plan[row.item_id] = (row.media, uniform_indices(count, n))
            continue
        scores = frame_scores(model, store, row.media, device, memo, frozen)
        plan[row.item_id] = (row.media, sampled_indices(count, n, sampler or cfg.sampler, scores, cfg.tau,
                                                        cfg.candidate_stride))
    return plan


def frame_store(cfg: TrainConfig, model, out: Path) -> FrameStore:
    cache = None if cfg.frame_cache == "none" else Path(cfg.frame_cache) if cfg.frame_cache else out / "cache" / "frames"
    return FrameStore(cache, model.cfg.frame_size, model.cfg.motion_mask, model.cfg.motion_threshold)


def quiet_worker(_: int) -> None:
    torch.set_num_threads(1)  # decoding workers must not compete with the training threads


def step_loader(dataset, steps: range, workers: int):
    """A DataLoader over optimiser steps: each element is one step's collated micro-batches."""
    return torch.utils.data.DataLoader(dataset, sampler=steps, batch_size=None, num_workers=workers,
                                       worker_init_fn=quiet_worker if workers else None,
                                       prefetch_factor=2 if workers else None)


def to_device(inputs: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}


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


def train(cfg: TrainConfig) -> dict:
    if not cfg.release or not cfg.out:
        raise ValueError("a release folder and an output folder are required (--release, --out)")
    release, out = Path(cfg.release).resolve(), Path(cfg.out).resolve()
    if not (release / "manifest.json").is_file():
        raise FileNotFoundError(f"{release} is not a hivau release (no manifest.json)")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    rank, world, device = setup_distributed(cfg.device)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    started = time.time()

    rows = read_rows(release, "train", cfg.levels, cfg.tasks)
    if not rows:
        raise ValueError(f"{release} has no training rows for levels {cfg.levels} and tasks {cfg.tasks}")
    motion = motion_targets(rows)
    model = build_model(cfg, rows, motion, device)
    store = frame_store(cfg, model, out)
    lengths = model.collator().length_report(rows, model.cfg.n_frames, model.cfg.frame_size) \
        if cfg.preset == "vlm" else {}
    if lengths:
        log(out, rank, {"stage": "lengths", **lengths})

    per_step = cfg.batch_size * cfg.grad_accum * world
    steps_per_epoch = max(1, len(rows) // per_step)
    total = cfg.max_steps if cfg.max_steps is not None else max(1, int(cfg.epochs * steps_per_epoch))
    checkpoint = latest_checkpoint(out)
    scorer_report = {}
    if checkpoint is None:
        scorer_report = train_scorer(model, store, release, cfg, device, out, rank)
    model.scorer.requires_grad_(False)  # stage 2 trains the language side only
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, total, cfg))
    step = restore(checkpoint, model, optimizer, scheduler) if checkpoint else 0
    if checkpoint:
        log(out, rank, {"resumed_from": checkpoint.name, "step": step})

    plan = frame_plan(model, store, rows, cfg, device, frozen=frozen_features(model, store, out, device))
    dataset = StepInputs(ItemFrames(rows, plan, store, model.cfg.n_frames, motion), model.collator(),
                         lambda k: list(micro_batches(len(rows), k, cfg, rank, world, steps_per_epoch)))
    ddp = model
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True,
                                                        device_ids=[device.index] if device.type == "cuda" else None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and cfg.bf16)
    model.train()
    meta = {"release": str(release), "world": world}
    for micro in step_loader(dataset, range(step, min(total, cfg.stop_at or total)), cfg.workers):
        if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60:
            log(out, rank, {"stopped": "max_minutes", "step": step})
            break
        optimizer.zero_grad(set_to_none=True)
        sums = {"total": 0.0, "vl": 0.0, "mv": 0.0, "ml": 0.0}
        for m, inputs in enumerate(micro):
            inputs.pop("over_length")
            # DDP averages gradients on the last micro-batch only
            accumulate = ddp.no_sync() if world > 1 and m < len(micro) - 1 else contextlib.nullcontext()
            with accumulate, autocast:
                losses = ddp(**to_device(inputs, device), t1=cfg.t1, t2=cfg.t2)
                (losses.total / len(micro)).backward()
            for k, v in losses.as_floats().items():
                sums[k] += v / len(micro)
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        if step % cfg.log_every == 0 or step == total:
            log(out, rank, {"stage": "vlm", "step": step, "lr": scheduler.get_last_lr()[0],
                            **{k: round(v, 4) for k, v in sums.items()}, "elapsed_s": round(time.time() - started, 1)})
        if rank == 0 and (step % cfg.save_every == 0):
            save_checkpoint(out, step, model, optimizer, scheduler, meta, cfg.keep_last)
    summary = {"steps": step, "seconds": round(time.time() - started, 1), "rows": len(rows), "world": world,
               "device": str(device), **lengths, **scorer_report}
    if world > 1:  # each rank records a digest of its weights: DDP keeps them identical
        (out / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "digest": weights_digest(model)}))
    if rank == 0:
        from hivau.models.io import save_model

        save_checkpoint(out, step, model, optimizer, scheduler, meta, cfg.keep_last)
        save_model(model, out / "model", model_card(cfg, model.cfg, summary), mode=cfg.save,
                   extra={"release": str(release), "train": cfg.model_dump(mode="json", exclude={"model"}),
                          "summary": summary})
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary


def parse_args(argv=None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="hivau-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML or JSON TrainConfig; the flags below override it")
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
    parser.add_argument("--sampler", choices=["ats", "uniform", "topk"])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--preset-options", type=json.loads, help='JSON, e.g. \'{"image_size": 128}\'')
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    base = TrainConfig.load(args.pop("config")).model_dump(exclude_unset=True) if "config" in args else {}
    return TrainConfig.model_validate({**base, **args})


def main(argv=None) -> None:
    summary = train(parse_args(argv))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"done": summary}))


if __name__ == "__main__":
    main()
