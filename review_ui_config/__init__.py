"""Label Studio labeling configs, one per level."""
