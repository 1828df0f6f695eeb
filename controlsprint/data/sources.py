"""Where `prepare` reads its inputs: an image folder, or a parquet / `datasets` dataset.

Both present the same face to the pipeline: `num_inputs`, a `fingerprint` (what --resume checks is
unchanged), `notes` (one-line remarks for the user) and `load_chunk(start, end) -> list[Item]`, run in
the parent process. An item carries either a file path (the worker reads it) or the encoded bytes.

Image folder (`--images DIR`): every file with an image suffix under DIR (recursively, hidden entries
skipped), sorted by relative path. Captions come, as in `datasets`' imagefolder, from DIR/metadata.jsonl
or DIR/metadata.csv (or `--captions FILE` in the same format): a `file_name` column with paths relative
to the metadata file, and the caption column (`--caption-column`, else `text`, else `caption`).

Dataset (`--dataset PATH`): a .parquet file; a directory of parquet files (for example a Hub dataset or
a controlsprint dataset), read recursively in sorted order; or a `Dataset.save_to_disk` directory
(Arrow files listed in state.json; for a DatasetDict, its `train` split). The image column
(`--image-column`, default `image`) may be a `datasets.Image` struct {bytes, path}, raw bytes or a
path string; the caption column as above.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from controlsprint.errors import UserError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
CAPTION_COLUMN_FALLBACKS = ("text", "caption")


@dataclass(frozen=True)
class Item:
    index: int
    source: str  # how the user names this input: a relative path, or file#row
    caption: str
    data: bytes | str  # encoded image bytes, or a path for the worker to read


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _pick_caption_column(columns: list[str], wanted: str | None, where: str) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise UserError(f"{where}: no caption column '{wanted}'; columns are {', '.join(columns)}")
        return wanted
    return next((c for c in CAPTION_COLUMN_FALLBACKS if c in columns), None)


# ---------------------------------------------------------------------------------------------------
# Image folders


def read_caption_table(path: Path, caption_column: str | None) -> dict[str, str]:
    """file_name -> caption from an imagefolder metadata.jsonl / metadata.csv file."""
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        elif path.suffix == ".csv":
            with open(path, newline="") as handle:
                records = list(csv.DictReader(handle))
        else:
            raise UserError(f"--captions {path}: expected a .jsonl or .csv file")
    except FileNotFoundError:
        raise UserError(f"--captions {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as err:
        raise UserError(f"{path}: cannot read captions ({' '.join(str(err).split())})") from None
    if not records or not all(isinstance(r, dict) for r in records):
        raise UserError(f"{path}: expected one record per image with file_name and a caption")
    columns = list(records[0])
    if "file_name" not in columns:
        raise UserError(f"{path}: no 'file_name' column; columns are {', '.join(columns)}")
    column = _pick_caption_column(columns, caption_column, str(path))
    if column is None:
        raise UserError(f"{path}: no caption column (text or caption); name it with --caption-column")
    return {str(r["file_name"]): str(r.get(column) or "") for r in records}


class ImageFolder:
    def __init__(self, root: Path, *, captions: Path | None = None, caption_column: str | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"--images {self.root}: not a directory")
        self.files = sorted(
            (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if self._is_candidate(p)),
        )
        if not self.files:
            raise UserError(f"--images {self.root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.notes: list[str] = []
        table_path = captions or next(
            (self.root / n for n in ("metadata.jsonl", "metadata.csv") if (self.root / n).is_file()), None
        )
        self.captions: dict[str, str] = {}
        if table_path is not None:
            base = Path(table_path).parent.resolve()
            for name, text in read_caption_table(Path(table_path), caption_column).items():
                try:
                    key = (base / name).resolve().relative_to(self.root.resolve()).as_posix()
                except ValueError:
                    continue  # names a file outside --images: not ours
                self.captions[key] = text
        missing = sum(1 for f in self.files if f not in self.captions)
        if missing:
            source = f"in {table_path}" if table_path else "(no metadata.jsonl or metadata.csv)"
            self.notes.append(
                f"{missing} of {len(self.files)} images have no caption {source}; their text is empty"
            )
        sizes = [f"{f}\t{(self.root / f).stat().st_size}\t{self.captions.get(f, '')}" for f in self.files]
        self.fingerprint = {"images": str(self.root.resolve()), "inputs_sha256": _digest(sizes)}

    def _is_candidate(self, path: Path) -> bool:
        relative = path.relative_to(self.root).parts
        return (
            path.suffix.lower() in IMAGE_SUFFIXES
            and not any(p.startswith(".") for p in relative)
            and path.is_file()
        )

    @property
    def num_inputs(self) -> int:
        return len(self.files)

    def load_chunk(self, start: int, end: int) -> list[Item]:
        return [
            Item(i, self.files[i], self.captions.get(self.files[i], ""), str(self.root / self.files[i]))
            for i in range(start, end)
        ]


# ---------------------------------------------------------------------------------------------------
# Parquet and Arrow datasets


class _Part:
    """One parquet or arrow file, read by row range."""

    def __init__(self, path: Path, label: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path, self.label = path, label
        try:
            if path.suffix == ".arrow":
                self.table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
                self.parquet = None
                self.schema, self.num_rows = self.table.schema, self.table.num_rows
            else:
                self.parquet = pq.ParquetFile(path, memory_map=True)
                self.schema, self.num_rows = self.parquet.schema_arrow, self.parquet.metadata.num_rows
        except (OSError, pa.ArrowInvalid) as err:
            raise UserError(
                f"{path}: not a readable parquet/arrow file ({' '.join(str(err).split())})"
            ) from None

    def read(self, start: int, end: int, columns: list[str]):
        """Rows [start, end) of this file (file-local indices) as a pyarrow table."""
        import pyarrow as pa

        if self.parquet is None:
            return self.table.slice(start, end - start).select(columns)
        tables, first_row, offset = [], None, 0
        for group in range(self.parquet.metadata.num_row_groups):
            rows = self.parquet.metadata.row_group(group).num_rows
            if offset + rows > start and offset < end:
                first_row = offset if first_row is None else first_row
                tables.append(self.parquet.read_row_group(group, columns=columns))
            offset += rows
        return pa.concat_tables(tables).slice(start - first_row, end - start)


def _dataset_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix not in (".parquet", ".arrow"):
            raise UserError(f"--dataset {path}: expected a .parquet file or a dataset directory")
        return [path]
    if not path.is_dir():
        raise UserError(f"--dataset {path}: no such file or directory")
    if (path / "dataset_dict.json").is_file():
        if not (path / "train").is_dir():
            raise UserError(f"--dataset {path}: a DatasetDict without a 'train' split")
        path = path / "train"
    if (path / "state.json").is_file():
        try:
            state = json.loads((path / "state.json").read_text())
            return [path / entry["filename"] for entry in state["_data_files"]]
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as err:
            raise UserError(f"{path / 'state.json'}: unreadable save_to_disk state ({err})") from None
    files = sorted(
        p for p in path.rglob("*.parquet") if not any(x.startswith(".") for x in p.relative_to(path).parts)
    )
    if not files:
        raise UserError(f"--dataset {path}: no .parquet files (nor a save_to_disk dataset)")
    return files


class TableDataset:
    def __init__(self, path: Path, *, image_column: str = "image", caption_column: str | None = None):
        import pyarrow as pa

        self.path = Path(path)
        root = self.path if self.path.is_dir() else self.path.parent
        self.parts = [_Part(f, f.relative_to(root).as_posix()) for f in _dataset_files(self.path)]
        self.root = root
        columns = self.parts[0].schema.names
        if image_column not in columns:
            raise UserError(
                f"--dataset {self.path}: no image column '{image_column}'; columns are {', '.join(columns)}"
            )
        kind = self.parts[0].schema.field(image_column).type
        if not (
            pa.types.is_struct(kind)
            or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)
            or pa.types.is_string(kind)
        ):
            raise UserError(f"--dataset {self.path}: column '{image_column}' holds {kind}, not images")
        self.image_column = image_column
        self.caption_column = _pick_caption_column(columns, caption_column, f"--dataset {self.path}")
        self.notes = (
            [] if self.caption_column else [f"{self.path} has no text or caption column; text is empty"]
        )
        for part in self.parts[1:]:
            missing = {c for c in (image_column, self.caption_column) if c} - set(part.schema.names)
            if missing:
                raise UserError(f"{part.path}: missing column(s) {', '.join(sorted(missing))}")
        self.starts = []
        total = 0
        for part in self.parts:
            self.starts.append(total)
            total += part.num_rows
        if total == 0:
            raise UserError(f"--dataset {self.path}: no rows")
        self.num_inputs = total
        listing = [f"{p.label}\t{p.num_rows}\t{p.path.stat().st_size}" for p in self.parts]
        self.fingerprint = {"dataset": str(self.path.resolve()), "inputs_sha256": _digest(listing)}

    def _image_data(self, value, source: str) -> bytes | str:
        if isinstance(value, dict):
            if value.get("bytes"):
                return value["bytes"]
            value = value.get("path")
        if isinstance(value, bytes):
            return value
        if isinstance(value, str) and value:
            path = Path(value)
            return str(path if path.is_absolute() else self.root / path)
        return b""  # load_image rejects it as empty, naming the row

    def load_chunk(self, start: int, end: int) -> list[Item]:
        items: list[Item] = []
        columns = [c for c in (self.image_column, self.caption_column) if c]
        for part, first in zip(self.parts, self.starts, strict=True):
            lo, hi = max(start, first), min(end, first + part.num_rows)
            if lo >= hi:
                continue
            table = part.read(lo - first, hi - first, columns)
            images = table.column(self.image_column).to_pylist()
            captions = (
                table.column(self.caption_column).to_pylist() if self.caption_column else [""] * len(images)
            )
            for offset, (image, caption) in enumerate(zip(images, captions, strict=True)):
                source = f"{part.label}#{lo - first + offset}"
                items.append(Item(lo + offset, source, str(caption or ""), self._image_data(image, source)))
        return items
