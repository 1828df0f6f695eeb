"""Take docs/images/suite.png: the demo suite on the embedded model, as a user sees it in Chromium.

    python demos/make_screenshot.py [--out docs/images/suite.png] [--model DIR]

Starts `controlsprint demo all --port 0` as its own process (the embedded model unless --model) and
reads the URL from its "running on" line, opens the page in headless Chromium (/usr/bin/chromium,
driven by Playwright), uploads the canny tab's bundled example with its caption, generates with the
tab's default settings, and saves a full-page screenshot once the picture is shown. The server is
stopped with SIGTERM afterwards. Needs the dev extras (playwright) and the
Debian package `chromium`; takes about a minute (most of it the first compile).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controlsprint.demos.ui import example  # noqa: E402
from tests.browser import CHROMIUM, chromium_page, upload_to_editor  # noqa: E402


def served_url(server: subprocess.Popen) -> str:
    """The URL of the `controlsprint demo` line, which is printed once the model is loaded and serving."""
    line = server.stdout.readline()
    match = re.search(r"running on (http://\S+)", line)
    if not match:
        raise SystemExit(f"the demo server did not start (exit code {server.poll()}): {line.strip()!r}")
    return match.group(1)


def screenshot(url: str, out: Path) -> None:
    with chromium_page() as (page, sync_api):
        page.goto(url)
        page.locator("#canny-input").wait_for()
        upload_to_editor(page, "#canny-input", example("shapes.png")[0], sync_api.TimeoutError)
        # The example's own caption, as clicking its row would give (a row click does not always reach
        # the image editor in headless Chromium, so the picture is uploaded and the prompt typed).
        prompt = page.locator("#canny-prompt textarea")
        prompt.fill(example("shapes.png")[1])
        prompt.blur()
        page.locator("#canny-generate").click()
        page.locator("#canny-output img, .toast-body").first.wait_for(state="visible", timeout=600_000)
        errors = page.locator(".toast-body").all_inner_texts()
        if errors:
            raise SystemExit(f"the page showed an error instead of a picture: {errors}")
        page.wait_for_load_state("networkidle")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "suite.png")
    parser.add_argument("--model", help="model folder (default: the embedded model)")
    args = parser.parse_args()
    if not Path(CHROMIUM).is_file():
        raise SystemExit(f"{CHROMIUM} not found: install the Debian package chromium")

    command = [sys.executable, "-m", "controlsprint", "demo", "all", "--port", "0"]
    if args.model:
        command += ["--model", args.model]
    server = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    try:
        screenshot(served_url(server), args.out)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
