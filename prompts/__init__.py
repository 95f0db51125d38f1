"""Versioned prompt templates for the LLM stages, one file per task."""
