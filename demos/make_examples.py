"""Make the demos' bundled example images (controlsprint/demos/examples/): small PNGs, all ours.

    python demos/make_examples.py [--out DIR]

Shapes, grey, hands and motion (a clip's first frame) pictures come from the project's synthetic
generator (fixed seeds, so the files are the same on every run); the room is drawn here with a few
OpenCV polygons. Captions go to examples.json, where the apps read their example prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controlsprint.data.synth import render_scene, row_seed  # noqa: E402
from controlsprint.imageio import save_png  # noqa: E402

OUT = REPO / "controlsprint" / "demos" / "examples"
SEED = 11
# (file, synth kind, row, size): rows picked by eye for clear scenes; hands row 19 is one MediaPipe
# detects at the hands demo's default confidence (it misses most stylised synth hands).
SYNTH = (
    ("shapes.png", "shapes", 5, 256),
    ("scene.png", "shapes", 3, 256),
    ("hands.png", "hands", 19, 384),
    ("colours.png", "shapes", 9, 256),
    # The video demo's hint: the first frame of a motion clip (row 26 moves one shape to the right, no
    # still shapes), at the size the video model works at.
    ("motion.png", "motion", 26, 128),
)


def draw_room(width: int = 384, height: int = 256) -> np.ndarray:
    """A living room in one-point perspective: walls, wooden floor, window, sofa, rug, picture."""
    import cv2

    room = np.zeros((height, width, 3), np.uint8)
    back = np.array([[112, 56], [272, 56], [272, 168], [112, 168]])  # the back wall's corners
    corners = {"tl": (0, 0), "tr": (width, 0), "br": (width, height), "bl": (0, height)}

    def fill(points, colour):
        cv2.fillPoly(room, [np.array(points, np.int32)], colour, lineType=cv2.LINE_AA)

    # Floor first, its boards drawn towards the vanishing point; the walls then cover the boards' ends.
    fill([back[3], back[2], corners["br"], corners["bl"]], (150, 104, 66))  # wooden floor
    for x in range(-200, width + 200, 40):
        cv2.line(room, (192 + (x - 192) // 4, 168), (x, height), (124, 84, 52), 1, cv2.LINE_AA)
    fill([corners["tl"], corners["tr"], back[1], back[0]], (236, 232, 222))  # ceiling
    fill([corners["tl"], back[0], back[3], corners["bl"]], (196, 206, 190))  # left wall
    fill([corners["tr"], back[1], back[2], corners["br"]], (186, 198, 180))  # right wall
    fill(back, (210, 218, 202))  # back wall
    fill([[150, 74], [234, 74], [234, 128], [150, 128]], (250, 250, 246))  # window frame
    fill([[156, 80], [228, 80], [228, 122], [156, 122]], (140, 196, 236))  # sky
    cv2.line(room, (192, 80), (192, 122), (250, 250, 246), 3)
    fill([[36, 60], [84, 78], [84, 122], [36, 116]], (214, 150, 60))  # picture on the left wall
    fill([[124, 146], [260, 146], [260, 184], [124, 184]], (52, 84, 150))  # sofa back
    fill([[116, 170], [268, 170], [268, 204], [116, 204]], (64, 100, 170))  # sofa seat
    fill([[108, 150], [126, 150], [126, 206], [108, 206]], (44, 72, 130))  # armrests
    fill([[258, 150], [276, 150], [276, 206], [258, 206]], (44, 72, 130))
    cv2.ellipse(room, (192, 230), (120, 20), 0, 0, 360, (170, 60, 56), -1, cv2.LINE_AA)  # rug
    cv2.line(room, (316, 120), (316, 214), (60, 60, 60), 3, cv2.LINE_AA)  # floor lamp
    fill([[300, 104], [332, 104], [324, 124], [308, 124]], (246, 224, 150))
    return room


def write_examples(out: Path) -> dict[str, str]:
    """Write every example image and examples.json into `out`; returns {file: caption}."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    images, captions = {}, {}
    for name, kind, row, size in SYNTH:
        scene = render_scene(kind, row_seed(SEED, row), size)
        images[name], captions[name] = scene.image, scene.caption
    # The colorization example: a colour scene without its colours (BT.601 luma, as the gray condition).
    images["grey.png"] = cv2.cvtColor(images.pop("colours.png"), cv2.COLOR_RGB2GRAY)
    captions["grey.png"] = captions.pop("colours.png")
    images["room.png"] = draw_room()
    captions["room.png"] = "a living room with a blue sofa, a window and a wooden floor"
    for name, pixels in images.items():
        os.chmod(save_png(out / name, pixels), 0o644)  # save_png's temporary file was private
    (out / "examples.json").write_text(json.dumps(captions, indent=2) + "\n")
    return captions


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=OUT, help=f"folder to write (default: {OUT.relative_to(REPO)})"
    )
    for name, caption in write_examples(parser.parse_args().out).items():
        print(f"{name}: {caption}")


if __name__ == "__main__":
    main()
