"""Label Studio labeling configs for clip, event and video review, and the control names they use."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

SUMMARY_CONTROLS = ("summary", "judgement", "description", "analysis")
CHAIN_CONTROL = "chain"  # the event and video configs' reasoning chain, one text of labelled lines
QA_CONTROLS = tuple(f"{side}_{t}" for t in ("what", "who", "where", "when", "how", "how_much", "why")
                    for side in ("q", "a"))


@lru_cache(maxsize=None)
def load_config(level: str) -> str:
    """The XML labeling config for `clip`, `event` or `video`."""
    if level not in ("clip", "event", "video"):
        raise ValueError(f"no review config for level {level!r}")
    return resources.files(__package__).joinpath(f"{level}.xml").read_text()
