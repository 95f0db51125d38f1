"""Retraining policy as plain steps: how hivau-train is run on a release, and when its model is registered (when
it learned: better than its own untrained start and than chance, and not worse than the current model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Literal, Optional

from pydantic import BaseModel, Field

from hivau.models.evaluate import not_worse
from hivau.models.registry import record_decision


class RetrainSettings(BaseModel):
    """How `retrain` trains and judges a model; the deployment's defaults come from $HIVAU_RETRAIN_SETTINGS."""

    preset: Optional[Literal["tiny", "pretrained", "vlm"]] = Field(
        "tiny", description="tiny: small models built in-process (CPU); vlm: a local Hugging Face video VLM "
                            "(preset_options.model_path)")
    config: Optional[str] = Field(None, description="a hivau-train config file (YAML/JSON) instead of the preset")
    preset_options: dict = Field(default_factory=dict, description="e.g. {image_size: 64} for a faster tiny model")
    scorer_epochs: Optional[int] = None
    epochs: float = 30.0
    max_steps: Optional[int] = None
    max_minutes: Optional[float] = Field(20.0, description="wall-time cap of the training run")
    batch_size: int = 8
    lr: float = 1e-3
    nproc: int = Field(1, ge=1, description="processes (torchrun DDP) for training")
    models_dir: Optional[str] = Field(None, description="default: the release's workspace /models")
    tolerance: float = Field(0.01, description="a new model is registered unless a headline figure falls by more")
    eval_batch_size: int = 16

    @classmethod
    def from_env(cls) -> "RetrainSettings":
        return cls.model_validate(json.loads(os.environ.get("HIVAU_RETRAIN_SETTINGS", "{}")))


def train_command(release: Path, out: Path, settings: RetrainSettings) -> list[str]:
    args = ["--release", str(release), "--out", str(out)]
    if settings.config:  # the file decides the recipe; only the caps below apply on top
        args += ["--config", settings.config]
    else:
        args += ["--preset", settings.preset or "tiny", "--epochs", str(settings.epochs),
                 "--batch-size", str(settings.batch_size), "--lr", str(settings.lr)]
    args += ["--max-steps", str(settings.max_steps)] if settings.max_steps is not None else []
    args += ["--max-minutes", str(settings.max_minutes)] if settings.max_minutes else []
    args += ["--preset-options", json.dumps(settings.preset_options)] if settings.preset_options else []
    args += ["--scorer-epochs", str(settings.scorer_epochs)] if settings.scorer_epochs is not None else []
    if settings.nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={settings.nproc}",
                "-m", "hivau.models.train", *args]
    return [sys.executable, "-m", "hivau.models.train", *args]


def untrained_settings(settings: RetrainSettings) -> RetrainSettings:
    """The same recipe stopped before its first step: the model a retrain must beat (random weights for the tiny
    preset, the pretrained ones for vlm), with the same seed and so the same start."""
    return settings.model_copy(update={"max_steps": 0, "scorer_epochs": 0, "nproc": 1})


def run_training(release: Path, out: Path, settings: RetrainSettings, log: Callable[[str], None]) -> str:
    """hivau-train in its own process(es); its JSON progress lines go to `log`. Returns the model folder."""
    proc = subprocess.Popen(train_command(release, out, settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-40:]
        if line.startswith("{"):
            log(line.rstrip())
    if proc.wait() != 0:
        raise RuntimeError(f"hivau-train exited with {proc.returncode}:\n" + "\n".join(tail))
    return str(out / "model")


CHANCE = {"auc": 0.5}  # a frame scorer that ranks no better than this has learned nothing
# fewer held-out videos than this cannot show learning (the learning check holds out 21: BENCHMARKS.md)
MIN_TEST_VIDEOS = 10


def learned(new: dict, start: dict, test_videos: int) -> tuple[bool, list[str]]:
    """Did training teach the model anything? Every headline figure must beat the same recipe's untrained start,
    and AUC chance too; the reasons say which did not, and when the test split is too small to tell."""
    ok, reasons = True, []
    for key, value in new.items():
        before = start.get(key)
        if value is None:
            continue
        if key in CHANCE and value <= CHANCE[key]:
            ok = False
            reasons.append(f"{key} {value:.4f} is no better than chance ({CHANCE[key]})")
        elif before is not None and value <= before:
            ok = False
            reasons.append(f"{key} {value:.4f} is no better than the untrained start's {before:.4f}")
        else:
            reasons.append(f"{key} rose from {'-' if before is None else f'{before:.4f}'} to {value:.4f}")
    if test_videos < MIN_TEST_VIDEOS:
        reasons.append(f"the test split has {test_videos} videos: too few to show learning (the trainer's learning "
                       "check holds out 21 videos of 12 demo sets; see BENCHMARKS.md)")
    return ok, reasons


def register_if_learned(models_dir: Path, name: str, model: str, manifest: dict, release_path: Path,
                        metrics: dict, untrained: dict, previous: Optional[dict], before: Optional[dict],
                        tolerance: float) -> tuple[bool, list[str]]:
    """Register the new model when it beats its own untrained start (and chance) and no headline figure fell by
    more than `tolerance` against the current model (all judged on the new release's test split); the decision
    and its reasons are recorded either way."""
    taught, why = learned(metrics["headline"], untrained["headline"], metrics["scorer"].get("videos", 0))
    kept, worse = not_worse(metrics["headline"], before["headline"] if before else None, tolerance)
    ok, reasons = taught and kept, why + worse
    record_decision(models_dir, {"name": name, "path": model, "release": manifest["name"],
                                 "release_path": str(release_path), "headline": metrics["headline"],
                                 "untrained_headline": untrained["headline"], "learned": taught,
                                 "previous": previous["name"] if previous else None,
                                 "previous_headline": before["headline"] if before else None,
                                 "reasons": reasons}, registered=ok)
    return ok, reasons
