"""Remakes docs/demo.png and docs/demo-restyle.png from a running demo page, in headless Chromium.

    python -m pipelines.demo &                  # http://127.0.0.1:7860
    python scripts/demo_screenshot.py http://127.0.0.1:7860 docs

Generate: 16 Sneakers from seed 0. Restyle: the first of those Sneakers, uploaded as a 28x28 PNG.
Needs the test extra (Playwright) and Debian's chromium.
"""

import base64
import io
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect, sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FETCH_IMAGE = """async img => {
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
}"""


def main(url: str, out_dir: str) -> None:
    out = Path(out_dir)
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", headless=True, args=FLAGS,
            viewport={"width": 1100, "height": 700})
        page = context.new_page()
        page.goto(url)
        page.get_by_label("Class").click()
        page.get_by_role("option", name="Sneaker", exact=True).click()
        page.get_by_label("Seed").fill("0")
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("#generate-message")).to_contain_text("Sneaker (seed 0)")
        page.wait_for_timeout(1000)  # the image fades in
        page.screenshot(path=str(out / "demo.png"))

        grid = page.locator("#generate-image img").evaluate(FETCH_IMAGE)
        tile = Image.open(io.BytesIO(base64.b64decode(grid))).crop((2, 2, 30, 30))
        buffer = io.BytesIO()
        tile.save(buffer, format="PNG")
        page.get_by_role("tab", name="Restyle").click()
        page.locator("#restyle-upload input[type=file]").set_input_files(
            files=[{"name": "sneaker.png", "mimeType": "image/png", "buffer": buffer.getvalue()}])
        page.get_by_label("The upload is a").click()
        page.get_by_role("option", name="Sneaker", exact=True).click()
        expect(page.locator("#restyle-message")).to_contain_text("(Sneaker) as every class")
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "demo-restyle.png"))
        context.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
