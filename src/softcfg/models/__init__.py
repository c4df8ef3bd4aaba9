"""Model families, each an adapter to ``ARModel`` (``base``), found by name in ``registry`` and built by
``loading.load_model``. Importing this package loads no torch; the family modules do."""
