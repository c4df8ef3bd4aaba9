"""Image-set metrics: one suite (ADM's definitions) over two feature extractors (digits classifier,
Inception)."""

METRICS = ("fid", "sfid", "is", "kid", "precision", "recall")
