"""Holmes-VAU's anomaly scorer: snippet features -> 1-D conv -> transformer -> a sigmoid score per snippet."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hivau.models.config import ScorerConfig


class AnomalyScorer(nn.Module):
    def __init__(self, d_in: int, cfg: ScorerConfig):
        super().__init__()
        self.conv = nn.Conv1d(d_in, cfg.d_model, cfg.kernel, padding=cfg.kernel // 2)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.heads, dim_feedforward=2 * cfg.d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.temporal = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.head = nn.Linear(cfg.d_model, 1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """features (B, S, d_in), mask (B, S) true where a snippet exists -> logits (B, S)."""
        x = F.gelu(self.conv(features.transpose(1, 2))).transpose(1, 2)
        x = self.temporal(x, src_key_padding_mask=None if mask is None else ~mask)
        return self.head(x).squeeze(-1)


def snippet_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-snippet binary cross-entropy over the snippets that exist."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (loss * mask).sum() / mask.sum().clamp(min=1)


def mil_ranking(anomalous: torch.Tensor, normal: torch.Tensor, smooth: float = 8e-5,
                sparse: float = 8e-5) -> torch.Tensor:
    """Sultani et al.'s ranking loss for videos with only a video-level label: the top snippet of an
    anomalous video should outscore the top snippet of a normal one, with smooth and sparse scores."""
    a, n = torch.sigmoid(anomalous), torch.sigmoid(normal)
    hinge = F.relu(1.0 - a.max() + n.max())
    return hinge + smooth * (a[1:] - a[:-1]).pow(2).sum() + sparse * a.sum()


def snippet_targets(n_snippets: int, stride: int, fps: float, events: list[tuple[float, float]]) -> np.ndarray:
    """1 for snippets whose centre frame lies inside an anomalous event, else 0."""
    centres_s = (np.arange(n_snippets) * stride + stride / 2) / fps
    out = np.zeros(n_snippets, np.float32)
    for start, end in events:
        out[(centres_s >= start) & (centres_s < end)] = 1.0
    return out


def frame_labels(n_frames: int, fps: float, events: list[tuple[float, float]]) -> np.ndarray:
    times = np.arange(n_frames) / fps
    out = np.zeros(n_frames, np.int8)
    for start, end in events:
        out[(times >= start) & (times < end)] = 1
    return out


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank statistic (ties share their average rank)."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based ranks, ties share their average
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
