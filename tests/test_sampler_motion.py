"""The frame samplers (pure functions) and HAWK's motion input, on synthetic and real frames."""

from __future__ import annotations

import numpy as np
import pytest

from hivau.models.motion_input import flow_magnitude, motion_frames, motion_mask, previous_indices
from hivau.models.sampler import density_aware_indices, sample_indices, scores_to_frames, topk_indices, uniform_indices


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
