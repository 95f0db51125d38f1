"""Releasing: immutable versioned releases, their export formats, ATS frame exports and the retrain policy."""
