"""Training-free guidance (CFG, SoftCFG) for visual autoregressive image generators."""

__version__ = "0.1.0"
