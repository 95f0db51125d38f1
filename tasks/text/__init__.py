"""Texts: clip captions, the LLM roll-up into summaries and 5W2H pairs (or the offline extractive backend), motion
phrases, and the contracts every text backend meets."""
