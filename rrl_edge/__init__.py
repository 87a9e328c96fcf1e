"""rrl-edge: RRL-Net cross-spectral patch matching from training to INT8 engines."""

__version__ = "0.9.0"
