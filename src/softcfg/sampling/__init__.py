"""The generation loop (``loop``: next-token and next-scale models alike) with any guidance method,
teacher-forced replay, shards and per-step diagnostics."""
