"""The trainer: anomaly scorer, ATS sampler and motion-aware video LLMs, their recipe (hivau-train) and evaluation."""
