"""`controlsprint extract`: condition images (and landmark JSON) for many input images."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from controlsprint.conditions import EXTRACTORS
from controlsprint.conditions.options import OPTIONS, SAM_MODEL_ENV, option_types
from controlsprint.errors import UserError
from controlsprint.imagelimits import DEFAULT_MAX_PIXELS

NAME = "extract"
HELP = "extract conditions (canny, segment, hands, pose, face, gray) from images"
DESCRIPTION = f"""\
Extract condition images from INPUT files or directories (the images directly inside, sorted) and
write DIR/<stem>.png, one per input. NAME may be a comma list (canny,hands): then each extractor
writes into DIR/<name>/<stem>.png. With --json, landmark extractors (hands, pose, face) also write
<stem>.json beside the PNG. Bad inputs (missing, empty, truncated, not an image, too large) are
listed at the end, one line each; the good ones are still processed; the exit code is 2 if any failed.
Extractor options apply to the extractors that have them (see docs/conditions.md). The segment
extractor uses SAM from --sam-model DIR (or ${SAM_MODEL_ENV}), else a classical offline segmenter.

examples:
  controlsprint extract canny photos/ --out conditions/canny --resolution 512
  controlsprint extract canny,hands,pose photos/*.jpg --out conditions --json
  controlsprint extract segment photo.png --out seg --sam-model ~/models/sam-vit-base
  controlsprint extract canny scan.tif --out edges --low-threshold 50 --high-threshold 150 --blur 5"""
USES_JAX = False

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


def _option_fields() -> dict[str, tuple[Any, list[str], str]]:
    """option name -> (declared type, extractors that take it, help text)."""
    fields: dict[str, tuple[Any, list[str], str]] = {}
    for extractor, options_type in OPTIONS.items():
        types_ = option_types(options_type)
        for field in dataclasses.fields(options_type):
            if field.name in fields:
                fields[field.name][1].append(extractor)
            else:
                fields[field.name] = (types_[field.name], [extractor], field.metadata.get("help", ""))
    return fields


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_extractor_option_flags(parser: argparse.ArgumentParser) -> None:
    """The extractor option flags (--low-threshold, --max-hands, ...), shared with `prepare`."""
    group = parser.add_argument_group(
        "extractor options (each applies to the extractors named at the start of its help)"
    )
    for name, (kind, owners, text) in _option_fields().items():
        base_type = next(t for t in (getattr(kind, "__args__", None) or (kind,)) if t is not type(None))
        help_text = f"{', '.join(owners)}: {text}"
        if base_type is bool:
            group.add_argument(
                _flag(name), dest=f"option_{name}", action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            metavar = {int: "N", float: "X"}.get(base_type, "DIR" if name == "sam_model" else "VALUE")
            group.add_argument(
                _flag(name), dest=f"option_{name}", type=base_type, metavar=metavar, help=help_text
            )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help=f"extractor, or comma list: {', '.join(EXTRACTORS)}")
    parser.add_argument("inputs", metavar="INPUT", nargs="+", help="image files or directories of images")
    parser.add_argument("--out", metavar="DIR", required=True, help="output directory (created if missing)")
    parser.add_argument(
        "--resolution",
        metavar="N",
        type=int,
        default=None,
        help="short side of the output, rounded to a multiple of 8 (default: input size rounded to 8)",
    )
    parser.add_argument(
        "--json", action="store_true", help="also write <stem>.json landmarks (hands, pose, face)"
    )
    parser.add_argument(
        "--max-pixels",
        metavar="N",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images with more pixels, read from the header (default {DEFAULT_MAX_PIXELS})",
    )
    add_extractor_option_flags(parser)


def _parse_names(text: str) -> list[str]:
    names = []
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        if name not in EXTRACTORS:
            raise UserError(f"unknown extractor '{name}'; known: {', '.join(EXTRACTORS)}")
        if name not in names:
            names.append(name)
    if not names:
        raise UserError("no extractor named; give one of " + ", ".join(EXTRACTORS))
    return names


def _options_per_extractor(args: argparse.Namespace, names: list[str]) -> dict[str, dict[str, Any]]:
    fields = _option_fields()
    given = {name: value for name in fields if (value := getattr(args, f"option_{name}")) is not None}
    per_extractor: dict[str, dict[str, Any]] = {name: {} for name in names}
    for option, value in given.items():
        owners = [name for name in names if name in fields[option][1]]
        if not owners:
            raise UserError(
                f"{_flag(option)} does not apply to {', '.join(names)}; it is an option of "
                f"{', '.join(fields[option][1])}"
            )
        for owner in owners:
            per_extractor[owner][option] = value
    return per_extractor


def expand_inputs(inputs: Iterable[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to process (directories replaced by the images inside, sorted) and inputs already failed."""
    files: list[Path] = []
    failures: list[tuple[str, str]] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                failures.append((text, f"directory holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"))
            files.extend(images)
        else:
            files.append(path)  # missing files fail in load_image with its one-line reason
    return files, failures


def _write_json(path: Path, payload: dict) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(payload, stream, indent=1)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _failure_line(source: str, reason: str) -> str:
    return reason if reason.startswith(f"{source}: ") else f"{source}: {reason}"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from controlsprint.conditions import get_extractor
    from controlsprint.imageio import load_image, save_png

    names = _parse_names(args.name)
    if args.resolution is not None and args.resolution < 8:
        raise UserError(f"--resolution {args.resolution}: must be at least 8")
    if args.max_pixels < 1:
        raise UserError(f"--max-pixels {args.max_pixels}: must be at least 1")
    if args.json and not any(EXTRACTORS[name].has_landmarks for name in names):
        raise UserError(
            f"--json writes landmarks, and none of {', '.join(names)} has any (hands, pose and face do)"
        )
    options = _options_per_extractor(args, names)
    extractors = [get_extractor(name, **options[name]) for name in names]
    out_root = Path(args.out)
    out_dirs = {name: out_root / name if len(names) > 1 else out_root for name in names}

    files, failures = expand_inputs(args.inputs)
    claimed: dict[str, Path] = {}
    written_images = written_json = 0
    told: set[str] = set()
    progress = tqdm(
        files, desc="extract", unit="image", file=sys.stderr, disable=True if len(files) < 2 else None
    )
    for path in progress:
        if (owner := claimed.get(path.stem)) is not None:
            failures.append((str(path), f"output name '{path.stem}' is already taken by {owner}"))
            continue
        try:
            image = load_image(path, max_pixels=args.max_pixels)
            claimed[path.stem] = path
            for extractor in extractors:
                result = extractor.extract(image, resolution=args.resolution)
                if result.notice and extractor.name not in told:
                    told.add(extractor.name)
                    tqdm.write(f"controlsprint extract: {result.notice}", file=sys.stderr)
                metadata = {
                    "controlsprint:extractor": extractor.name,
                    "controlsprint:options": json.dumps(dataclasses.asdict(extractor.options)),
                    "controlsprint:source": path.name,
                }
                target = out_dirs[extractor.name] / f"{path.stem}.png"
                save_png(target, result.image, metadata)
                written_images += 1
                if args.json and result.landmarks is not None:
                    height, width = result.image.shape[:2]
                    payload = {
                        "source": str(path),
                        "extractor": extractor.name,
                        "width": width,
                        "height": height,
                    }
                    _write_json(target.with_suffix(".json"), {**payload, "landmarks": result.landmarks})
                    written_json += 1
        except UserError as err:
            failures.append((str(path), str(err)))
        except Exception as err:  # one odd file must not cost the user the rest of a long batch
            failures.append((str(path), f"unexpected {type(err).__name__}: {' '.join(str(err).split())}"))
    progress.close()
    for extractor in extractors:
        extractor.close()

    json_note = f" and {written_json} landmark JSON file(s)" if args.json else ""
    print(f"wrote {written_images} condition image(s){json_note} to {out_root}")
    if failures:
        print(f"controlsprint extract: {len(failures)} input(s) failed:", file=sys.stderr)
        for source, reason in failures:
            print(_failure_line(source, reason), file=sys.stderr)
        return 2
    return 0
