"""hivau: an open data engine for hierarchical video anomaly understanding."""

__version__ = "0.1.0"
