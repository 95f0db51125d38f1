"""Pure segment arithmetic, tested apart from any ffmpeg call."""

import math

import pytest

from hivau.schemas import reasons
from hivau.tasks.build import segments as seg


@pytest.mark.parametrize("start,end,reason", [
    (math.nan, 3.0, reasons.TIME_NAN),
    (1.0, math.nan, reasons.TIME_NAN),
    (-0.5, 3.0, reasons.TIME_NEGATIVE),
    (4.0, 4.0, reasons.TIME_START_NOT_BEFORE_END),
    (5.0, 2.0, reasons.TIME_START_NOT_BEFORE_END),
    (9.0, 12.0, reasons.TIME_PAST_END),
    (10.5, 11.0, reasons.TIME_PAST_END),
])
def test_check_segment_rejects(start, end, reason):
    check = seg.check_segment(start, end, duration=10.0, fps=30.0)
    assert not check.ok and check.reason == reason and check.detail


def test_check_segment_clamps_within_one_frame():
    check = seg.check_segment(33.333, 59.867, duration=59.8333, fps=30.0)  # HIVAU's Arson016_x264_E0
    assert check.ok and check.end_s == pytest.approx(59.8333) and "clamped" in check.notes[0]
    assert seg.check_segment(1.0, 59.95, duration=59.8333, fps=30.0).reason == reasons.TIME_PAST_END


def test_overlapping_keeps_first_of_each_pair():
    events = [(33.333, 59.8), (33.333, 59.867), (60.0, 70.0), (70.0, 75.0), (69.0, 71.0)]
    assert seg.overlapping(events) == {1: 0, 4: 2}


def test_normal_segments_deterministic_disjoint_inside():
    a = seg.sample_normal_segments("Normal_Videos_003_x264", 94.0, 3, 8.0, seed=7)
    assert a == seg.sample_normal_segments("Normal_Videos_003_x264", 94.0, 3, 8.0, seed=7)
    assert a != seg.sample_normal_segments("Normal_Videos_006_x264", 94.0, 3, 8.0, seed=7)
    assert a != seg.sample_normal_segments("Normal_Videos_003_x264", 94.0, 3, 8.0, seed=8)
    assert len(a) == 3
    for (s, e), nxt in zip(a, a[1:] + [(math.inf, math.inf)]):
        assert 0 <= s < e <= 94.0 and e - s == pytest.approx(8.0) and e <= nxt[0]


def test_normal_segments_short_video():
    assert seg.sample_normal_segments("v", 5.0, 3, 8.0, 0) == [(0.0, 5.0)]
    assert len(seg.sample_normal_segments("v", 17.0, 3, 8.0, 0)) == 2  # only two 8 s segments fit
    assert seg.sample_normal_segments("v", 100.0, 0, 8.0, 0) == []


def test_split_even_and_fixed():
    assert seg.split_even(10.0, 16.0, 3) == [(10.0, 12.0), (12.0, 14.0), (14.0, 16.0)]
    assert seg.split_fixed(0.0, 10.0, 4.0) == [(0.0, 4.0), (4.0, 8.0), (8.0, 10.0)]
    assert seg.split_fixed(0.0, 8.5, 4.0, min_length_s=1.0) == [(0.0, 4.0), (4.0, 8.5)]


def test_assign_spans_rules():
    events = [(10.0, 20.0), (30.0, 40.0)]
    spans = [(12.0, 15.0), (18.0, 33.0), (19.0, 31.0), (45.0, 50.0), (8.0, 11.0)]
    assert seg.assign_spans(spans, events, "max_overlap", 0.5) == [0, None, None, None, None]
    assert seg.assign_spans(spans, events, "any_overlap") == [0, 1, 0, None, 0]
    assert seg.assign_spans(spans, events, "midpoint") == [0, None, None, None, None]
    assert seg.assign_spans([(8.0, 11.0)], events, "max_overlap", 0.3) == [0]


def test_merge_spans_joins_close_and_overlapping():
    assert seg.merge_spans([(20.0, 25.0), (1.0, 5.0), (4.0, 8.0), (8.5, 9.0)], 1.0) == [(1.0, 9.0), (20.0, 25.0)]


def test_keyframe_and_frame_helpers():
    keys = [0.0, 5.0, 10.0, 15.0]
    assert seg.keyframe_at_or_before(12.3, keys) == 10.0
    assert seg.keyframe_at_or_before(10.0, keys) == 10.0
    assert seg.keyframe_at_or_before(4.999, keys) == 0.0
    assert seg.uniform_frame_indices(0, 99, 4) == [12, 37, 62, 87]
    assert seg.uniform_frame_indices(10, 12, 8) == [10, 11, 12]
    assert seg.time_to_frame_range(1.0, 2.0, 25.0, 1000) == (25, 49)
    assert seg.time_to_frame_range(0.0, 100.0, 25.0, 250) == (0, 249)
