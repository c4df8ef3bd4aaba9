"""Files: atomic writes, deterministic npz shards, manifests and checksums."""
