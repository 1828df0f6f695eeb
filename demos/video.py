"""Video (text + hint image -> short clip; needs a model with temporal layers), runnable alone:

    python demos/video.py [--model DIR] [--host 127.0.0.1] [--port N] [--share]

The app itself is `controlsprint.demos.video.create_demo(core)` (installed with the package, so
`controlsprint demo video` and the Spaces use the same code); this file only serves it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a fresh clone works without an install

from controlsprint.demos.video import create_demo  # noqa: E402  (the app factory)

__all__ = ["create_demo"]

if __name__ == "__main__":
    from controlsprint.demos.launch import run_script

    sys.exit(run_script("video"))
