"""Headless Chromium driven by Playwright: shared by the browser tests and demos/make_screenshot.py."""

from __future__ import annotations

import contextlib

CHROMIUM = "/usr/bin/chromium"  # the Debian package `chromium`


@contextlib.contextmanager
def chromium_page(executable: str = CHROMIUM):
    """(page, playwright's sync_api): a headless Chromium page at 1280x1000, closed afterwards."""
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(180_000)  # a loaded 2-core machine takes its time over the editor's code
            yield page, sync_api
        finally:
            browser.close()


def upload_to_editor(page, editor: str, path, timeout_error, attempts: int = 3) -> None:
    """Give `editor`'s file input a picture and wait until the editor shows it.

    The editor has taken the picture once its "Upload an image" prompt is gone from the canvas. A file
    set while the page's scripts are still wiring the editor up is dropped without a trace (one run in
    the full suite on a loaded machine waited 180 s for it), so the page is first let go quiet, and an
    upload that does not show within a minute is given again, as a person would."""
    page.wait_for_load_state("networkidle")
    taken = (
        f"() => {{ const editor = document.querySelector('{editor}');"
        " return editor.querySelector('canvas') && !editor.innerText.includes('Upload an image'); }"
    )
    for attempt in range(attempts):
        page.locator(f"{editor} input[type=file]").set_input_files(path)
        try:
            page.wait_for_function(taken, timeout=60_000)
            return
        except timeout_error:
            if attempt == attempts - 1:
                raise
