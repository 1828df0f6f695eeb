"""Training entry point: `python train/train.py CONFIG [--set k=v ...] [--resume]`.

The same as `controlsprint train`; see `controlsprint train --help` and docs/training.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controlsprint.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
