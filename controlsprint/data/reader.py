"""`ShardedDataset`: the trainer's deterministic, resumable, multi-process batch stream.

Order. Epoch e visits every row once, in `default_rng([seed, e]).permutation(num_rows)`. Epochs follow
each other forever. Step s is global batch s of that stream: with G = batch_size * process_count and
`steps_per_epoch = num_rows // G` (drop_remainder) or `ceil(num_rows / G)`, step s is positions
[b*G, (b+1)*G) of epoch s // steps_per_epoch's permutation, b = s % steps_per_epoch. Process p takes
positions [p*B, (p+1)*B) of that global batch, so the processes partition it exactly.

Because a batch is a pure function of (seed, step), `start_step` jumps straight to it: nothing before it
is read or decoded, and a resumed run sees exactly the batches an uninterrupted run would have seen.

Reading. Rows are fetched by (shard, row group) from memory-mapped parquet (the writer keeps row groups
small and image columns uncompressed, so random access reads little more than the rows themselves).
PNG decoding and resizing run on a background thread with a small decode pool; OpenCV releases the
GIL, so decoding overlaps the training step.

Clips. A dataset with a `frames` column (synth `--kinds motion`) also gives each clip, decoded from its
filmstrip to [F, r, r, 3] frames: `batches()` adds `frames`, `examples()` adds `frames` and `motion`.
Datasets without clips give exactly what they gave before.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from controlsprint.data import format as fmt
from controlsprint.errors import UserError


class ShardedDataset:
    """A dataset directory written by `controlsprint synth` or `controlsprint prepare`."""

    def __init__(self, directory: str | Path):
        import pyarrow.parquet as pq

        self.directory = Path(directory)
        manifest = fmt.load_manifest(self.directory)
        if not manifest.get("complete"):
            raise UserError(
                f"{self.directory} is incomplete ({len(manifest['shards'])} of {manifest['num_shards']} shards); "
                "finish it by running the same command with --resume"
            )
        self.manifest = manifest
        self.condition_names: tuple[str, ...] = tuple(manifest["conditions"])
        self.condition_columns: dict[str, str] = dict(manifest["condition_columns"])
        self.has_clips = fmt.FRAMES_COLUMN in manifest.get("columns", ())
        self.clip_frames: int | None = manifest.get("recipe", {}).get("frames") if self.has_clips else None
        required = {fmt.IMAGE_COLUMN, fmt.TEXT_COLUMN, fmt.DEFAULT_CONDITION_COLUMN}
        if self.has_clips:
            required |= {fmt.FRAMES_COLUMN, fmt.MOTION_COLUMN}
        self._files: list[pq.ParquetFile] = []
        starts, groups = [], []  # global row index where each (file, row group) begins
        total = 0
        for shard in manifest["shards"]:
            path = self.directory / shard["file"]
            if not path.is_file():
                raise UserError(f"{self.directory}: shard {shard['file']} listed in the manifest is missing")
            handle = pq.ParquetFile(path, memory_map=True)
            missing = required - set(handle.schema_arrow.names)
            if missing:
                raise UserError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            if handle.metadata.num_rows != shard["rows"]:
                raise UserError(
                    f"{path}: has {handle.metadata.num_rows} rows, the manifest says {shard['rows']} "
                    "(the file was changed after it was written)"
                )
            for group in range(handle.metadata.num_row_groups):
                starts.append(total)
                groups.append((len(self._files), group))
                total += handle.metadata.row_group(group).num_rows
            self._files.append(handle)
        self.num_rows = total
        self._group_starts = np.asarray(starts, dtype=np.int64)
        self._groups = groups
        # pyarrow's ParquetFile readers are not safe to share between threads (seen: a mutex assertion
        # abort with several streams of one dataset); reads are short, decoding happens outside.
        self._read_lock = threading.Lock()

    def __len__(self) -> int:
        return self.num_rows

    def column_for(self, condition: str | None) -> str:
        """The parquet column holding `condition` (None: the default condition)."""
        if condition is None:
            return fmt.DEFAULT_CONDITION_COLUMN
        if condition not in self.condition_columns:
            raise UserError(
                f"condition '{condition}' is not in {self.directory}; it has {', '.join(self.condition_names)}"
            )
        return self.condition_columns[condition]

    # -- the order ------------------------------------------------------------------------------------

    def steps_per_epoch(self, global_batch: int, drop_remainder: bool = True) -> int:
        if drop_remainder:
            return self.num_rows // global_batch
        return math.ceil(self.num_rows / global_batch)

    def global_batch_indices(
        self, step: int, global_batch: int, *, seed: int, drop_remainder: bool = True
    ) -> np.ndarray:
        """Row indices of global batch `step` (all processes), per the module docstring."""
        per_epoch = self.steps_per_epoch(global_batch, drop_remainder)
        if per_epoch == 0:
            raise UserError(
                f"{self.directory} has {self.num_rows} rows, fewer than one global batch of {global_batch}"
            )
        epoch, position = divmod(step, per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(self.num_rows)
        return order[position * global_batch : (position + 1) * global_batch]

    # -- reading --------------------------------------------------------------------------------------

    def read_rows(self, indices: np.ndarray, columns: list[str]) -> dict[str, list]:
        """Raw column values of rows `indices`, in that order (image columns as PNG bytes)."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_rows):
            raise IndexError(f"row index out of range 0..{self.num_rows - 1}")
        group_of = np.searchsorted(self._group_starts, indices, side="right") - 1
        out: dict[str, list] = {name: [None] * len(indices) for name in columns}
        for group in np.unique(group_of):
            file_index, row_group = self._groups[group]
            wanted = np.flatnonzero(group_of == group)
            offsets = indices[wanted] - self._group_starts[group]
            with self._read_lock:
                table = self._files[file_index].read_row_group(int(row_group), columns=columns)
                picked = {name: table.column(name).take(offsets).to_pylist() for name in columns}
            for name, values in picked.items():
                for slot, value in zip(wanted, values, strict=True):
                    out[name][slot] = value["bytes"] if isinstance(value, dict) else value
        return out

    def examples(self, indices, *, resolution: int, condition: str | None = None) -> dict:
        """Rows `indices` decoded: images and conditions as [N, r, r, 3] uint8, texts (validation, eval).

        Clip datasets add `frames` [N, F, r, r, 3] uint8 and `motion` (the parsed motion records).
        """
        import json

        column = self.column_for(condition)
        clip_columns = [fmt.FRAMES_COLUMN, fmt.MOTION_COLUMN] if self.has_clips else []
        raw = self.read_rows(np.asarray(indices), [fmt.IMAGE_COLUMN, column, fmt.TEXT_COLUMN, *clip_columns])
        result = {
            "images": np.stack([_decode_square(b, resolution) for b in raw[fmt.IMAGE_COLUMN]]),
            "conditions": np.stack([_decode_square(b, resolution) for b in raw[column]]),
            "texts": list(raw[fmt.TEXT_COLUMN]),
        }
        if self.has_clips:
            result["frames"] = np.stack([_decode_clip(b, resolution) for b in raw[fmt.FRAMES_COLUMN]])
            result["motion"] = [json.loads(m) for m in raw[fmt.MOTION_COLUMN]]
        return result

    def images_and_texts(self, indices, *, resolution: int) -> tuple[np.ndarray, list[str]]:
        """Rows `indices` as training pixels [N, r, r, 3] float32 in [-1, 1] and their captions."""
        raw = self.read_rows(np.asarray(indices), [fmt.IMAGE_COLUMN, fmt.TEXT_COLUMN])
        images = [_decode_square(b, resolution) for b in raw[fmt.IMAGE_COLUMN]]
        return _pixels(images, resolution), list(raw[fmt.TEXT_COLUMN])

    def batches(
        self,
        batch_size: int,
        *,
        seed: int,
        condition: str | None = None,
        resolution: int,
        process_index: int = 0,
        process_count: int = 1,
        start_step: int = 0,
        drop_remainder: bool = True,
        prefetch: int = 2,
        decode_threads: int = 4,
        images: bool = True,
        foreground: str | None = None,
    ) -> Iterator[dict]:
        """Endless batches for this process: pixel_values [-1, 1], conditioning_pixel_values [0, 1], text,
        rows (the dataset row indices) and step.

        Images and conditions are resized (short side = resolution) and centre-cropped to a square.
        Clip datasets add `frames` [B, F, r, r, 3] float32 in [-1, 1] (frame 0 equals pixel_values).
        `images=False` leaves out pixel_values (and frames), and does not read or decode them: for a
        trainer that has the images' latents already (training/encodings.py).
        `foreground` names a condition whose non-black pixels are the foreground: batches then carry
        `foreground` [B, r, r] float32, 1 there and 0 elsewhere (the trainer's foreground loss weight).
        """
        if batch_size < 1 or process_count < 1 or not 0 <= process_index < process_count:
            raise UserError(
                f"batch_size={batch_size}, process {process_index} of {process_count}: need batch_size >= 1 "
                "and 0 <= process_index < process_count"
            )
        if start_step < 0 or resolution < 8 or prefetch < 1:
            raise UserError(
                f"start_step={start_step}, resolution={resolution}, prefetch={prefetch}: out of range"
            )
        column = self.column_for(condition)
        mask_column = None if foreground is None else self.column_for(foreground)
        global_batch = batch_size * process_count
        self.global_batch_indices(0, global_batch, seed=seed, drop_remainder=drop_remainder)  # checks size
        return _Prefetcher(
            self._produce(
                batch_size,
                seed,
                column,
                resolution,
                process_index,
                global_batch,
                start_step,
                drop_remainder,
                decode_threads,
                images,
                mask_column,
            ),
            prefetch,
        )

    def _produce(
        self,
        batch_size,
        seed,
        column,
        resolution,
        process_index,
        global_batch,
        start_step,
        drop_remainder,
        threads,
        with_images,
        mask_column,
    ):
        image_columns = [fmt.IMAGE_COLUMN, *([fmt.FRAMES_COLUMN] if self.has_clips else [])]
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            step = start_step
            while True:
                rows = self.global_batch_indices(step, global_batch, seed=seed, drop_remainder=drop_remainder)
                mine = rows[process_index * batch_size : (process_index + 1) * batch_size]
                wanted = [column, fmt.TEXT_COLUMN, *(image_columns if with_images else [])]
                if mask_column not in (None, column):
                    wanted.append(mask_column)
                raw = self.read_rows(mine, wanted)
                conditions = list(pool.map(lambda b: _decode_square(b, resolution), raw[column]))
                conditioning = (
                    np.stack(conditions).astype(np.float32) / 255.0 if conditions else _empty(resolution)
                )
                batch = {
                    "conditioning_pixel_values": conditioning,
                    "text": list(raw[fmt.TEXT_COLUMN]),
                    "rows": mine,
                    "step": step,
                }
                if mask_column is not None:
                    masks = (
                        conditions
                        if mask_column == column
                        else pool.map(lambda b: _decode_square(b, resolution), raw[mask_column])
                    )
                    batch["foreground"] = _foreground(list(masks), resolution)
                if with_images:
                    batch.update(self._decoded_images(pool, raw, resolution))
                yield batch
                step += 1

    def _decoded_images(self, pool, raw: dict, resolution: int) -> dict:
        images = list(pool.map(lambda b: _decode_square(b, resolution), raw[fmt.IMAGE_COLUMN]))
        decoded = {"pixel_values": _pixels(images, resolution)}
        if self.has_clips:
            clips = list(pool.map(lambda b: _decode_clip(b, resolution), raw[fmt.FRAMES_COLUMN]))
            decoded["frames"] = (
                np.stack(clips).astype(np.float32) / 127.5 - 1.0
                if clips
                else np.zeros((0, self.clip_frames or 0, resolution, resolution, 3), np.float32)
            )
        return decoded


def _empty(resolution: int) -> np.ndarray:
    return np.zeros((0, resolution, resolution, 3), np.float32)


def _foreground(masks: list[np.ndarray], resolution: int) -> np.ndarray:
    """Decoded uint8 condition images -> [N, r, r] float32: 1 where any channel is lit, else 0."""
    if not masks:
        return np.zeros((0, resolution, resolution), np.float32)
    return (np.stack(masks).max(axis=-1) > 0).astype(np.float32)


def _pixels(images: list[np.ndarray], resolution: int) -> np.ndarray:
    """Decoded uint8 images -> one float32 batch in [-1, 1] (the VAE's input range)."""
    return np.stack(images).astype(np.float32) / 127.5 - 1.0 if images else _empty(resolution)


def _decode_square(data: bytes, resolution: int) -> np.ndarray:
    """PNG bytes -> resolution x resolution x 3 uint8: short side resized to `resolution`, centre crop."""
    from controlsprint.data.codec import decode_rgb

    image = decode_rgb(data)
    if image is None:
        raise ValueError("a dataset image could not be decoded")
    return _square(image, resolution)


def _decode_clip(data: bytes, resolution: int) -> np.ndarray:
    """Filmstrip PNG bytes -> [F, resolution, resolution, 3] uint8, each frame sized like `_decode_square`."""
    from controlsprint.data.codec import decode_clip

    frames = decode_clip(data)
    if frames is None:
        raise ValueError("a dataset clip could not be decoded")
    return np.stack([_square(frame, resolution) for frame in frames])


def _square(image: np.ndarray, resolution: int) -> np.ndarray:
    """Short side resized to `resolution` (area when shrinking, bilinear when enlarging), centre crop."""
    import cv2

    height, width = image.shape[:2]
    scale = resolution / min(height, width)
    if scale != 1.0:
        size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
        interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interpolation)
        height, width = image.shape[:2]
    top, left = (height - resolution) // 2, (width - resolution) // 2
    return image[top : top + resolution, left : left + resolution]


class _Prefetcher:
    """Runs a generator on a daemon thread, `depth` items ahead; re-raises its errors in the consumer."""

    _DONE = object()

    def __init__(self, source: Iterator, depth: int):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._fill, args=(source,), daemon=True, name="dataset-prefetch"
        )
        self._thread.start()

    def _fill(self, source) -> None:
        try:
            for item in source:
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as err:  # delivered to the consumer, which raises it
            self._queue.put(err)
        else:
            self._queue.put(self._DONE)
        finally:
            source.close()  # shuts the producer's decode pool down

    def __iter__(self):
        return self

    def __next__(self):
        item = self._queue.get()
        if item is self._DONE:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop the background thread (it exits within ~0.1 s)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def __del__(self):
        self._stop.set()
