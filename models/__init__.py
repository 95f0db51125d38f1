"""Trainer package (anomaly scorer, ATS sampler, motion-aware video LLM); filled by the trainer issue."""
