"""The frame samplers (pure functions) and HAWK's motion input, on synthetic and real frames."""

from __future__ import annotations

import numpy as np
import pytest

from hivau.models.config import TrainConfig
from hivau.models.evaluate import SAMPLERS
from hivau.models.motion_input import flow_magnitude, motion_frames, motion_mask, previous_indices
from hivau.models.sampler import (
    SAMPLER_NAMES,
    density_aware_indices,
    holmes_density_indices,
    sample_indices,
    scores_to_frames,
    topk_indices,
    uniform_indices,
)


@pytest.mark.parametrize("total,n", [(100, 8), (9, 8), (1000, 32), (17, 16)])
def test_ats_returns_n_sorted_distinct_indices_inside_the_video(total, n):
    rng = np.random.default_rng(total)
    for scores in (rng.random(total), np.zeros(total), np.r_[np.ones(total // 2), np.zeros(total - total // 2)]):
        picked = density_aware_indices(scores, n)
        assert len(picked) == min(n, total)
        assert picked == sorted(set(picked))
        assert 0 <= picked[0] and picked[-1] < total


def test_ats_is_denser_where_scores_are_high_and_uniform_when_flat():
    scores = np.zeros(200)
    scores[120:160] = 1.0  # an anomaly over 20% of the video
    picked = np.array(density_aware_indices(scores, 16, tau=0.1))
    inside = ((picked >= 120) & (picked < 160)).sum()
    # mass inside: 40 * 1.1 = 44 of 44 + 20 = 64 in total -> about 11 of 16 points
    assert inside >= 10
    assert density_aware_indices(np.full(200, 0.3), 8) == uniform_indices(200, 8)
    # tau keeps some frames outside the anomaly; a huge tau makes ATS uniform
    assert ((picked < 120) | (picked >= 160)).sum() >= 3
    assert density_aware_indices(scores, 8, tau=1e6) == uniform_indices(200, 8)


def test_short_videos_fall_back_to_every_frame():
    assert density_aware_indices([0.9, 0.1, 0.5], 8) == [0, 1, 2]
    assert topk_indices([0.9, 0.1], 4) == [0, 1]
    assert uniform_indices(0, 4) == []


def test_topk_uniform_and_spreading_scores():
    scores = [0.1, 0.9, 0.2, 0.8, 0.8, 0.0]
    assert topk_indices(scores, 3) == [1, 3, 4]
    assert sample_indices("topk", scores, 2) == [1, 3]
    assert uniform_indices(100, 4) == [12, 37, 62, 87]
    assert scores_to_frames([0.2, 0.7], stride=4, n_frames=10).tolist() == [0.2] * 4 + [0.7] * 6
    with pytest.raises(ValueError, match="unknown sampler"):
        sample_indices("random", scores, 2)


# ---------------------------------------------------------------- ats_holmes: Holmes-VAU's released sampler
def released_ats(scores, n: int, tau: float = 0.1) -> list[int]:
    """Holmes-VAU's `Temporal_Sampler.density_aware_sample`, transcribed independently with np.interp."""
    scores = np.asarray(scores, dtype=np.float64)
    total = len(scores)
    if total <= n or sum(scores) < 1:
        return np.rint(np.linspace(0, total - 1, n)).astype(int).tolist()
    mass = scores + tau
    cum = np.concatenate([[0.0], np.cumsum(mass)])
    targets = np.linspace(1, round(cum[-1]), n)
    # np.interp stops at the ends; interp1d(fill_value='extrapolate') continues the last segment past C[-1]
    pos = np.where(targets > cum[-1], total + (targets - cum[-1]) / mass[-1], np.interp(targets, cum, np.arange(total + 1)))
    return np.clip(np.floor(pos), 0, total - 1).astype(int).tolist()


def test_ats_holmes_falls_back_to_rounded_linspace():
    # T <= n: rint(linspace(0, 4, 8)) = rint(0, .57, 1.14, 1.71, 2.29, 2.86, 3.43, 4): n indices, repeats kept
    assert holmes_density_indices(np.ones(5), 8) == [0, 1, 1, 2, 2, 3, 3, 4]
    assert holmes_density_indices(np.ones(8), 8) == list(range(8))
    # sum(s) = 0.9 < 1: rint(linspace(0, 99, 4)) = rint(0, 33, 66, 99)
    assert holmes_density_indices(np.full(100, 0.009), 4) == [0, 33, 66, 99]
    # linspace(0, 5, 3) = (0, 2.5, 5): rint rounds the half to even -> 2, not 3
    assert holmes_density_indices(np.zeros(6), 3) == [0, 2, 5]
    assert holmes_density_indices([], 4) == [] and holmes_density_indices([0.5, 0.9], 0) == []


def test_ats_holmes_by_hand():
    # s = (.4, .9, 1.9, .4, .1, .4), sum 4.1 >= 1: mass = s + .1 = (.5, 1, 2, .5, .2, .5)
    # C = (0, .5, 1.5, 3.5, 4, 4.2, 4.7); M = round(4.7) = 5; targets = linspace(1, 5, 4) = (1, 2.33, 3.67, 5)
    #   1    in [.5, 1.5]: 1 + (1 - .5) / 1      = 1.5   -> 1
    #   2.33 in [1.5, 3.5]: 2 + (2.33 - 1.5) / 2 = 2.42  -> 2
    #   3.67 in [3.5, 4]:   3 + (3.67 - 3.5) / .5 = 3.33 -> 3
    #   5 > C[-1] = 4.7: the last segment extended, 6 + (5 - 4.7) / .5 = 6.6 -> 6, clamped to T - 1 = 5
    assert holmes_density_indices([0.4, 0.9, 1.9, 0.4, 0.1, 0.4], 4) == [1, 2, 3, 5]


def test_ats_holmes_keeps_duplicates_and_extrapolates_past_the_end():
    # mass (.1, .1, .1, 4, .1, .1, .1, .1): C = (0, .1, .2, .3, 4.3, 4.4, 4.5, 4.6, 4.7), M = 5
    # targets (1, 1.8, 2.6, 3.4, 4.2, 5): the first five fall in (.3, 4.3] -> frame 3 five times;
    # 5 > 4.7 extrapolates to 8 + (5 - 4.7) / .1 = 11 -> clamped to 7
    scores = [0, 0, 0, 3.9, 0, 0, 0, 0]
    assert holmes_density_indices(scores, 6) == [3, 3, 3, 3, 3, 7]
    assert len(set(density_aware_indices(scores, 6))) == 6  # hivau's ats never repeats a frame


def test_ats_holmes_rounds_the_total_half_to_even():
    # mass (1.5, .5, .25, .25): C = (0, 1.5, 2, 2.25, 2.5); np.round(2.5) = 2, so targets = (1, 2)
    #   1 -> 1 / 1.5 = .67 -> 0;  2 hits the knot C[2] -> 2
    # (rounding half up would give M = 3 > C[-1]: extrapolated, clamped to frame 3)
    assert holmes_density_indices([1.4, 0.4, 0.15, 0.15], 2) == [0, 2]


def test_ats_holmes_keeps_interp1d_arithmetic_at_a_knot():
    # mass (49, 16, 16, 16): C = (0, 49, 65, 81, 97), M = 97, targets (1, 49, 97). The target 49 is the knot
    # C[1]: scipy's interp1d takes the segment left of it, (1 / 49) * 49 + 0 = 0.9999999999999999 -> frame 0,
    # where np.interp gives exactly 1. The released code goes through interp1d, so frame 0 it is.
    scores = [48.9, 15.9, 15.9, 15.9]
    assert holmes_density_indices(scores, 3) == [0, 0, 3]
    assert released_ats(scores, 3) == [0, 1, 3]  # the np.interp transcription parts here only


def test_ats_holmes_matches_an_independent_transcription_on_random_curves():
    rng = np.random.default_rng(7)
    for k in range(200):
        total, n = int(rng.integers(2, 400)), int(rng.choice([4, 8, 16, 32]))
        t = np.arange(total)
        centre, width = rng.uniform(0, total), rng.uniform(2, max(3, total / 4))
        bump = np.exp(-0.5 * ((t - centre) / width) ** 2)
        scores = np.clip(0.05 * rng.random() + bump * rng.uniform(0, 1) + 0.05 * rng.standard_normal(total), 0, 1)
        if k % 5 == 0:
            scores = scores * 0.5 / max(scores.sum(), 1e-9)  # sum under 1: the uniform fallback
        picked = holmes_density_indices(scores, n)
        assert picked == released_ats(scores, n), (k, total, n)
        assert len(picked) == n and picked == sorted(picked) and 0 <= picked[0] and picked[-1] < total


def test_ats_holmes_is_reachable_by_name_and_rejects_what_released_code_would_misread():
    scores = [0.4, 0.9, 1.9, 0.4, 0.1, 0.4]
    assert sample_indices("ats_holmes", scores, 4) == [1, 2, 3, 5]
    assert "ats_holmes" in SAMPLER_NAMES and {"ats", "ats_holmes"} <= set(SAMPLERS)  # hivau-eval's ablation
    assert TrainConfig.model_validate({"sampler": "ats_holmes"}).sampler == "ats_holmes"
    with pytest.raises(ValueError, match="above -tau"):
        holmes_density_indices([2.0, -0.5, 0.1, 0.1], 2)  # C would fall: interp1d would re-sort it


def _square(x: int) -> np.ndarray:
    frame = np.full((64, 64, 3), 40, np.uint8)
    frame[20:36, x:x + 16] = 220
    return frame


def test_flow_magnitude_marks_the_moving_square_and_masks_the_background():
    before, after = _square(10), _square(14)
    magnitude = flow_magnitude(before, after)
    assert magnitude.shape == (64, 64) and 0.0 <= magnitude.min() and magnitude.max() == pytest.approx(1.0)
    assert magnitude[20:36, 10:30].mean() > 10 * magnitude[50:, :].mean()
    soft, hard = motion_mask(after, magnitude, "soft"), motion_mask(after, magnitude, "hard", threshold=0.2)
    assert soft[55:, 50:].max() <= 2  # static background goes dark
    assert soft[20:36, 14:30].mean() > 20
    assert set(np.unique(hard[magnitude > 0.2])) - {0} <= {40, 220}  # hard keeps pixels as they are
    assert (hard[magnitude <= 0.2] == 0).all()
    assert flow_magnitude(before, before).max() == 0.0  # no motion: an all-zero mask, not a division by zero


def test_motion_frames_seek_only_the_sampled_frames_and_their_predecessors(demo_dir):
    from hivau.tasks.build.frames import open_reader

    class CountingReader:
        def __init__(self, path):
            self.reader, self.asked = open_reader(path, width=64, height=64), []

        def __len__(self):
            return len(self.reader)

        def get_batch(self, indices):
            self.asked.append(list(indices))
            return self.reader.get_batch(indices)

    reader = CountingReader(str(demo_dir / "videos" / "demo_running_000.mp4"))
    indices = [0, 120, 200]
    out = motion_frames(reader, indices, mode="soft")
    assert out.shape == (3, 64, 64, 3) and out.dtype == np.uint8
    assert sorted(i for batch in reader.asked for i in batch) == sorted({0, 1, 119, 120, 199, 200})
    assert previous_indices([0, 5]) == [1, 4]
