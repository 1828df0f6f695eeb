"""Conditioning datasets: the shared parquet format, `synth`, `prepare` and the trainer's reader.

- `format`: the on-disk layout (parquet shards + manifest.json + rejects.jsonl), atomic shard writes.
- `pipeline`: the resumable, sharded, multi-process writer that `synth` and `prepare` both run.
- `synth/`: offline synthetic scenes (a registry of kinds) with ground-truth conditions.
- `prepare`: run the condition extractors over an image folder or a parquet dataset.
- `reader`: `ShardedDataset`, the deterministic, resumable batch stream for training.

Importing this package is cheap: pyarrow, cv2 and mediapipe load inside the modules that need them.
"""
