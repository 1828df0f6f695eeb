"""The dataset format that `synth` and `prepare` write and the trainer reads.

Layout of a dataset directory DIR:

    DIR/manifest.json                           counts, columns, conditions, shard list with row counts
                                                and sha256, the recipe (source, seed, options)
    DIR/rejects.jsonl                           one JSON line per input that was not turned into a row
    DIR/data/train-00000-of-00004.parquet ...   the rows

`datasets.load_dataset("parquet", data_dir=DIR)` reads it: the shard names follow the Hub's split
naming, and each shard's schema carries the `huggingface` metadata that declares the image columns as
`datasets.Image()` features (struct {bytes, path}, PNG bytes).

Columns:
- `image`: the picture; `text`: its caption.
- Condition columns. One condition: `conditioning_image` only. Several: `conditioning_image_<name>` for
  each, plus `conditioning_image`, a copy of the first (the default), so a trainer that knows only the
  default column always finds it. The manifest's `condition_columns` maps each name to its column.
- Extra metadata columns per producer (synth: `kind`, `seed`, `objects` JSON; prepare: `source`).
- Clip datasets (synth `--kinds motion`) add `frames`, an image column holding the clip as one PNG
  filmstrip (frames left to right, see `codec.encode_clip`), and `motion`, the motion record as JSON;
  `image` is the first frame, so everything that reads pictures works on clip datasets unchanged.

Writes are atomic: a shard is written to a hidden temporary file and renamed into place, then the
manifest (also replaced atomically) lists it. A crash never leaves a half shard counted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from controlsprint.errors import UserError

FORMAT_NAME = "controlsprint-dataset"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.jsonl"
DATA_SUBDIR = "data"
DEFAULT_CONDITION_COLUMN = "conditioning_image"
IMAGE_COLUMN = "image"
TEXT_COLUMN = "text"
FRAMES_COLUMN = "frames"
MOTION_COLUMN = "motion"
# PNG bytes are already compressed: parquet compression would only cost time. Small row groups keep
# random access (the reader's global shuffle) cheap, since reading one row reads its whole group: a
# group closes at ROW_GROUP_BYTES of images (4 rows of 512 px photos) or ROW_GROUP_MAX_ROWS rows
# (small synth pictures), whichever comes first.
ROW_GROUP_BYTES = 4 << 20
ROW_GROUP_MAX_ROWS = 64


def shard_name(index: int, count: int) -> str:
    """Relative path of shard `index` of `count`, in the Hub's `train-XXXXX-of-YYYYY` naming."""
    return f"{DATA_SUBDIR}/train-{index:05d}-of-{count:05d}.parquet"


def condition_columns(conditions: Sequence[str]) -> dict[str, str]:
    """Map condition names to column names (see the module docstring for the rule)."""
    if not conditions:
        raise UserError("at least one condition is needed")
    if len(set(conditions)) != len(conditions):
        raise UserError(f"conditions listed twice: {','.join(conditions)}")
    if len(conditions) == 1:
        return {conditions[0]: DEFAULT_CONDITION_COLUMN}
    return {name: f"{DEFAULT_CONDITION_COLUMN}_{name}" for name in conditions}


def image_columns(conditions: Sequence[str]) -> list[str]:
    """All image-typed columns of a dataset with these conditions, in schema order."""
    named = list(condition_columns(conditions).values())
    extra = [] if named == [DEFAULT_CONDITION_COLUMN] else [DEFAULT_CONDITION_COLUMN]
    return [IMAGE_COLUMN, *extra, *named]


def build_schema(conditions: Sequence[str], extra_columns: Mapping[str, str]):
    """The arrow schema: image columns, `text`, then `extra_columns` (name -> "string" | "int64" | "image")."""
    import pyarrow as pa

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    arrow_types = {"string": pa.string(), "int64": pa.int64(), "image": image_type}
    fields = [pa.field(name, image_type) for name in image_columns(conditions)]
    features: dict[str, Any] = {name: {"_type": "Image"} for name in image_columns(conditions)}
    fields.append(pa.field(TEXT_COLUMN, pa.string()))
    features[TEXT_COLUMN] = {"dtype": "string", "_type": "Value"}
    for name, kind in extra_columns.items():
        fields.append(pa.field(name, arrow_types[kind]))
        features[name] = {"_type": "Image"} if kind == "image" else {"dtype": kind, "_type": "Value"}
    metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    return pa.schema(fields, metadata=metadata)


def rows_to_table(rows: Sequence[Mapping[str, Any]], schema, conditions: Sequence[str]):
    """Build an arrow table from row dicts whose image values are PNG bytes keyed by condition name.

    A row holds `image` (bytes), `conditions` ({name: bytes}), `text` and the extra columns (PNG bytes
    for extra image columns).
    """
    import pyarrow as pa

    def image_array(payloads: list[bytes]):
        # Built from two flat arrays, not from a dict per row: this copies each PNG once.
        return pa.StructArray.from_arrays(
            [pa.array(payloads, pa.binary()), pa.nulls(len(payloads), pa.string())], names=["bytes", "path"]
        )

    columns = condition_columns(conditions)
    arrays = {IMAGE_COLUMN: image_array([row[IMAGE_COLUMN] for row in rows])}
    for name, column in columns.items():
        arrays[column] = image_array([row["conditions"][name] for row in rows])
    if DEFAULT_CONDITION_COLUMN not in arrays:
        arrays[DEFAULT_CONDITION_COLUMN] = arrays[columns[conditions[0]]]
    for field in schema:
        if field.name not in arrays:  # text and the extra columns
            values = [row[field.name] for row in rows]
            arrays[field.name] = (
                image_array(values) if pa.types.is_struct(field.type) else pa.array(values, field.type)
            )
    return pa.Table.from_arrays([arrays[field.name] for field in schema], schema=schema)


def _image_bytes(row: Mapping[str, Any]) -> int:
    """PNG bytes a row holds: picture, conditions and any extra image column (a clip's filmstrip)."""
    extra = sum(len(v) for k, v in row.items() if k != IMAGE_COLUMN and isinstance(v, bytes))
    return len(row[IMAGE_COLUMN]) + sum(map(len, row["conditions"].values())) + extra


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_and_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)


def temporary_path(final: Path) -> Path:
    """Hidden sibling name for atomic writes; readers (and `datasets`) ignore dot-files."""
    return final.with_name(f".{final.name}.tmp")


class ShardWriter:
    """Streams one shard into a hidden temporary file; `finish()` makes it appear whole, atomically.

    Row groups are cut by the rows' sizes alone (see ROW_GROUP_BYTES), whatever chunks `write` gets,
    so a shard's bytes depend only on its rows; the parent holds one row group in memory instead of a
    whole shard (a 1000-row shard of 512 px photos is ~1 GB).
    """

    def __init__(self, path: Path, schema, conditions: Sequence[str]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path, self.schema, self.conditions = Path(path), schema, tuple(conditions)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_path(self.path)
        # Image columns (structs of PNG bytes) are stored as they are; text and metadata get zstd.
        compression = {f.name: ("none" if pa.types.is_struct(f.type) else "zstd") for f in schema}
        self._writer = pq.ParquetWriter(
            self._tmp, schema, compression=compression, use_dictionary=[TEXT_COLUMN]
        )
        self._pending: list[Mapping[str, Any]] = []
        self._pending_bytes = 0
        self.rows = 0

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            self._pending.append(row)
            self._pending_bytes += _image_bytes(row)
            if self._pending_bytes >= ROW_GROUP_BYTES or len(self._pending) >= ROW_GROUP_MAX_ROWS:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(rows_to_table(self._pending, self.schema, self.conditions))
            self.rows += len(self._pending)
            self._pending, self._pending_bytes = [], 0

    def finish(self) -> dict:
        """Close, fsync and rename into place; returns the manifest record (rows, bytes, sha256)."""
        self._flush()
        self._writer.close()
        _fsync_and_replace(self._tmp, self.path)
        return {"rows": self.rows, "bytes": self.path.stat().st_size, "sha256": file_sha256(self.path)}

    def abort(self) -> None:
        """Drop the unfinished shard (it is redone on --resume)."""
        self._writer.close()
        self._tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: Any) -> None:
    tmp = temporary_path(path)
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
    _fsync_and_replace(tmp, path)


def load_manifest(directory: Path) -> dict:
    """Read and check DIR/manifest.json; every problem is a one-line `UserError` naming DIR."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"dataset directory {directory} does not exist")
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise UserError(
            f"{directory} has no {MANIFEST_NAME}: not a controlsprint dataset "
            "(make one with `controlsprint synth` or `controlsprint prepare`)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise UserError(f"{path} is not a {FORMAT_NAME} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path} has format_version {manifest.get('format_version')}, this controlsprint reads {FORMAT_VERSION}"
        )
    return manifest


def read_rejects(directory: Path) -> list[dict]:
    """The rejects log, skipping a torn last line a crash may have left."""
    path = Path(directory) / REJECTS_NAME
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def append_rejects(directory: Path, entries: Iterable[dict]) -> None:
    entries = list(entries)
    if not entries:
        return
    with open(Path(directory) / REJECTS_NAME, "a") as handle:
        handle.writelines(json.dumps(entry) + "\n" for entry in entries)
        handle.flush()
        os.fsync(handle.fileno())


def keep_rejects_of_shards(directory: Path, shard_indices: set[int]) -> None:
    """Drop log lines of shards that were not finished (they are redone on resume)."""
    path = Path(directory) / REJECTS_NAME
    if not path.exists():
        return
    kept = [entry for entry in read_rejects(directory) if entry.get("shard") in shard_indices]
    tmp = temporary_path(path)
    tmp.write_text("".join(json.dumps(entry) + "\n" for entry in kept))
    _fsync_and_replace(tmp, path)
