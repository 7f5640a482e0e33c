"""The demo page in a real browser: headless Chromium drives `python -m pipelines.demo` serving
the shipped model on a free loopback port, as a person would click it."""

import base64
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHIPPED
from cvae.limits import MAX_DEMO_IMAGES

CHROMIUM = "/usr/bin/chromium"  # Debian's package; no browser is downloaded
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
STARTUP_SECONDS = 120
# The bytes of the image an <img> shows, fetched by the page itself, as base64.
FETCH_IMAGE = """async img => {
    const response = await fetch(img.src);
    const bytes = new Uint8Array(await response.arrayBuffer());
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
}"""


def _require(available: bool, what: str) -> None:
    """Skips a test whose tools are missing on a developer's machine; fails it in CI, which
    installs them (.ci/run)."""
    if not available:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{what} (see .ci/run)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(array: np.ndarray) -> bytes:
    import tensorflow as tf

    return tf.io.encode_png(array).numpy()


@pytest.fixture(scope="module")
def tools():
    """Chromium, Playwright and Gradio, or a skip (outside CI) saying how to install them."""
    _require(Path(CHROMIUM).exists(), "no Chromium: apt-get install chromium")
    for module in ("playwright", "gradio"):
        try:
            __import__(module)
        except ImportError:
            _require(False, f'no {module}: pip install -e ".[test,demo]"')


@contextlib.contextmanager
def _demo(model: Path, root: Path):
    """The URL of `python -m pipelines.demo --model MODEL` on a free port, its files in `root`."""
    port = _free_port()
    log = open(root / "demo.log", "w+")
    # Every file the page writes (its own and Gradio's) stays in the test's folder.
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(root),
           "GRADIO_TEMP_DIR": str(root / "gradio")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.demo", "--model", str(model), "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"the demo exited with {process.returncode}:\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the demo did not answer on {url} within {STARTUP_SECONDS} s")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def demo_url(tools, tmp_path_factory):
    """The URL of `python -m pipelines.demo --model <shipped version>` on a free port."""
    with _demo(SHIPPED, tmp_path_factory.mktemp("demo")) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tools, tmp_path_factory):
    """A headless Chromium context (fresh profile) that lets the page reach only loopback
    addresses and records any other request it tries."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a request can take seconds on a busy 2-core machine
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            headless=True, args=CHROMIUM_FLAGS, accept_downloads=True,
            viewport={"width": 1200, "height": 900})
        context.outside_requests = []

        def only_loopback(route):
            url = route.request.url
            if urllib.parse.urlsplit(url).hostname in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                context.outside_requests.append(url)
                route.abort()

        context.route("**/*", only_loopback)
        context.set_default_timeout(30_000)
        yield context
        context.close()


@pytest.fixture
def page(browser, demo_url):
    page = browser.new_page()
    page.goto(demo_url)
    page.get_by_role("button", name="Generate").wait_for()
    yield page
    text = page.locator("body").inner_text()
    page.close()
    assert "Traceback" not in text
    assert browser.outside_requests == []


@pytest.fixture(scope="module")
def sneakers(tools, tmp_path_factory):
    """The PNG `pipelines.generate` writes for 16 Sneakers from seed 0, as a function that
    waits for it: the command runs while the demo starts."""
    out = tmp_path_factory.mktemp("generate") / "sneakers.png"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.generate", "--model", str(SHIPPED), "--label",
         "Sneaker", "--num", "16", "--seed", "0", "--out", str(out)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result() -> bytes:
        if process.returncode is None:
            stdout, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stdout + stderr
        return out.read_bytes()

    yield result
    if process.poll() is None:
        process.kill()
        process.wait()


def _choose(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_sneaker_seed_0_shows_and_downloads_the_png_pipelines_generate_writes(sneakers, page):
    from playwright.sync_api import expect

    _choose(page, "Class", "Sneaker")
    page.get_by_label("Number of images", exact=True).fill("16")
    page.get_by_label("Seed", exact=True).fill("0")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#generate-message")).to_contain_text("16 x Sneaker (seed 0)")
    shown = base64.b64decode(page.locator("#generate-image img").evaluate(FETCH_IMAGE))
    expected = sneakers()
    assert shown == expected
    with page.expect_download() as download:
        page.locator("#generate-download").click()
    assert Path(download.value.path()).read_bytes() == expected


# A field of the Generate tab, what is typed into it, and the page's message.
BAD_REQUESTS = [
    ("Number of images", str(MAX_DEMO_IMAGES + 1), f"the number of images must be a whole "
     f"number 1..{MAX_DEMO_IMAGES}, got {MAX_DEMO_IMAGES + 1}"),
    ("Seed", "2.5", "the seed must be a whole number 0..2147483647, got 2.5"),
    ("Seed", "", "give the seed (0..2147483647)"),
]


@pytest.mark.parametrize("field,typed,message", BAD_REQUESTS,
                         ids=["images-over-bound", "seed-2.5", "seed-empty"])
def test_a_refused_request_gives_a_message_on_the_page(page, field, typed, message):
    from playwright.sync_api import expect

    page.get_by_label(field, exact=True).fill(typed)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#generate-message")).to_contain_text(f"Refused: {message}")
    assert page.locator("#generate-image img").count() == 0


def _upload(page, name: str, data: bytes, tab: str = "Restyle", box: str = "restyle") -> None:
    page.get_by_role("tab", name=tab).click()
    page.locator(f"#{box}-upload input[type=file]").set_input_files(
        files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}])


def _broken_png() -> bytes:
    """A 28x28 grayscale PNG cut short: its header is sound, its pixels are not all there."""
    data = _png(np.random.default_rng(0).integers(0, 256, [28, 28, 1], dtype=np.uint8))
    return data[:len(data) // 2]


# What is uploaded (bytes, or a function making them: encoding a PNG needs TensorFlow, imported
# when a test runs rather than when it is collected) and the page's message.
BAD_UPLOADS = [
    ("notes.txt", b"a garment, in words", "notes.txt: not a PNG file"),
    ("colour.png", lambda: _png(np.zeros([28, 28, 3], np.uint8)),
     "colour.png: is a RGB PNG; expected 8-bit grayscale"),
    ("deep.png", lambda: _png(np.zeros([28, 28, 1], np.uint16)),
     "deep.png: has 16-bit pixels; expected 8-bit grayscale"),
    ("large.png", lambda: _png(np.zeros([32, 32, 1], np.uint8)),
     "large.png: is 32x32; expected 28x28"),
    ("broken.png", _broken_png, "broken.png: corrupt PNG (Invalid PNG data"),
]


@pytest.mark.parametrize("name,content,message", BAD_UPLOADS,
                         ids=["not-png", "rgb", "16-bit", "32x32", "cut-short"])
def test_a_bad_upload_gives_a_message_on_the_page(page, name, content, message):
    from playwright.sync_api import expect

    _upload(page, name, content if isinstance(content, bytes) else content())
    expect(page.locator("#restyle-message")).to_contain_text(f"Refused: {message}")
    assert page.locator("#restyle-image img").count() == 0


def test_an_upload_over_the_size_limit_is_refused_by_the_page(page):
    from playwright.sync_api import expect

    _upload(page, "huge.png", b"\x89PNG\r\n\x1a\n" + bytes(1_100_000))
    refusal = page.get_by_text('exceed the maximum allowed size of 1.0 Mb: "huge.png"')
    expect(refusal).to_be_visible()
    assert page.locator("#restyle-image img").count() == 0


def test_an_upload_is_restyled_as_every_class(sneakers, page):
    """The first Sneaker of the grid, uploaded: the page shows the labelled picture that
    `cvae.demo.restyle_png` draws, and offers it for download."""
    import tensorflow as tf
    from playwright.sync_api import expect

    from cvae import demo
    from cvae.serving import generate

    tile = tf.io.decode_png(sneakers()).numpy()[2:30, 2:30]  # a 2-pixel border around each tile
    data = _png(tile)
    _upload(page, "sneaker.png", data)
    _choose(page, "The upload is a", "Sneaker")
    expect(page.locator("#restyle-message")).to_contain_text("sneaker.png (Sneaker) as every class")
    expected, _ = demo.restyle_png(generate.load(SHIPPED), data, "sneaker.png", "Sneaker")
    shown = base64.b64decode(page.locator("#restyle-image img").evaluate(FETCH_IMAGE))
    assert shown == expected
    with page.expect_download() as download:
        page.locator("#restyle-download").click()
    assert Path(download.value.path()).read_bytes() == expected


def _garment() -> np.ndarray:
    """A plain long-sleeved top, uint8 [28, 28, 1]: white on black, with a gradient, so that
    pixels copied exactly can be told from pixels drawn again."""
    image = np.zeros([28, 28, 1], np.uint8)
    image[4:26, 8:20, 0] = np.linspace(90, 250, 22, dtype=np.uint8)[:, None]  # body
    image[5:20, 3:8, 0] = image[5:20, 20:25, 0] = 170  # sleeves
    return image


def test_inpainting_keeps_the_known_pixels_of_the_upload(page):
    """The top's bottom half masked: the page shows the masked upload and three completions
    (from seed 4) whose top halves are the upload's, pixel for pixel, and offers them."""
    import tensorflow as tf
    from playwright.sync_api import expect

    garment = _garment()
    _upload(page, "top.png", _png(garment), tab="In-painting", box="inpaint")
    _choose(page, "In-paint as", "Shirt")
    _choose(page, "Missing pixels", "bottom-half")
    page.get_by_label("Completion seed", exact=True).fill("4")
    page.get_by_role("button", name="In-paint").click()
    expect(page.locator("#inpaint-message")).to_contain_text(
        "top.png with its bottom half missing (gray), then 3 completions as Shirt (seed 4)")
    shown = base64.b64decode(page.locator("#inpaint-image img").evaluate(FETCH_IMAGE))
    grid = tf.io.decode_png(shown).numpy()
    assert grid.shape == (32, 122, 1)  # one row of 4 tiles, 2 black pixels around each
    tiles = [grid[2:30, 2 + 30 * i:30 + 30 * i] for i in range(4)]
    assert (tiles[0][:14] == garment[:14]).all() and (tiles[0][14:] == 128).all()
    for completion in tiles[1:]:
        assert (completion[:14] == garment[:14]).all()
    assert not (tiles[1][14:] == tiles[2][14:]).all()  # another request seed, another completion
    with page.expect_download() as download:
        page.locator("#inpaint-download").click()
    assert Path(download.value.path()).read_bytes() == shown


def test_an_upload_is_classified_as_one_of_the_ten_classes(page):
    import re

    from playwright.sync_api import expect

    from cvae.labels import CLASS_NAMES

    _upload(page, "top.png", _png(_garment()), tab="Classify", box="classify")
    names = "|".join(map(re.escape, CLASS_NAMES))
    expect(page.locator("#classify-message")).to_contain_text(re.compile(
        rf"top\.png: ({names}) \(\d\.\d{{3}}\); top three: .*; log-likelihood -?\d+\.\d nats; "
        rf"typicality -?\d+\.\d nats"))


def test_a_port_in_use_is_refused_before_anything_loads():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "pipelines.demo", "--port", str(port)], cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
            timeout=60)
    assert result.returncode == 2
    assert result.stderr.endswith(f"demo.py: error: cannot listen on 127.0.0.1:{port} (Address "
                                  f"already in use); choose another --port or --host\n")


# ----------------------------------------------------------------------------- upscale


def _has_signature(model: Path, name: str) -> bool:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((model / "saved_model.pb").read_bytes())
    return name in proto.meta_graphs[0].signature_def


@pytest.fixture(scope="module")
def upscale_model(tools, request):
    """The shipped version if it has `upscale`; else (versions exported before it) the small
    export of the `trained` fixture, which this project's code exports with every signature."""
    if _has_signature(SHIPPED, "upscale"):
        return SHIPPED
    return request.getfixturevalue("trained")["export"]


@pytest.fixture(scope="module")
def upscale_url(upscale_model, demo_url, tmp_path_factory):
    if upscale_model == SHIPPED:
        yield demo_url
        return
    with _demo(upscale_model, tmp_path_factory.mktemp("upscale-demo")) as url:
        yield url


@pytest.fixture
def upscale_page(browser, upscale_url):
    page = browser.new_page()
    page.goto(upscale_url)
    page.get_by_role("tab", name="Upscale").click()
    page.get_by_role("button", name="Upscale").wait_for()
    yield page
    text = page.locator("body").inner_text()
    page.close()
    assert "Traceback" not in text
    assert browser.outside_requests == []


def _upscaled_tiles(page, count: int) -> list[np.ndarray]:
    import tensorflow as tf

    shown = base64.b64decode(page.locator("#upscale-image img").evaluate(FETCH_IMAGE))
    grid = tf.io.decode_png(shown).numpy()
    assert grid.shape == (32, 2 + 30 * count, 1)  # one row of tiles, 2 black pixels around each
    return [grid[2:30, 2 + 30 * i:30 + 30 * i] for i in range(count)]


def test_upscale_takes_a_14x14_upload_as_generate_does(upscale_model, upscale_page, tmp_path):
    """A 14x14 upload is taken as it is (the factor choice is for 28x28 uploads): the page shows
    the PNG `pipelines.generate --upscale IMG --label Shirt --num 3 --seed 4` writes, offers it
    for download, and each completion's 2x2 block means are the upload's gray levels."""
    from playwright.sync_api import expect

    small = _garment().reshape(14, 2, 14, 2, 1).mean((1, 3)).round().astype(np.uint8)
    data = _png(small)
    (tmp_path / "small.png").write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    generated = subprocess.Popen(
        [sys.executable, "-m", "pipelines.generate", "--model", str(upscale_model), "--upscale",
         str(tmp_path / "small.png"), "--label", "Shirt", "--num", "3", "--seed", "4", "--out",
         str(tmp_path / "up.png")], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    _upload(upscale_page, "small.png", data, tab="Upscale", box="upscale")
    upscale_page.get_by_label("4", exact=True).check()  # ignored: the upload is 14x14
    _choose(upscale_page, "Upscale as", "Shirt")
    upscale_page.get_by_label("Upscale seed", exact=True).fill("4")
    upscale_page.get_by_role("button", name="Upscale").click()
    expect(upscale_page.locator("#upscale-message")).to_contain_text(
        "small.png at 14x14 (as uploaded: factor 2), then 3 completions at 28x28 as Shirt "
        "(seed 4)")
    tiles = _upscaled_tiles(upscale_page, 4)
    assert (tiles[0] == np.repeat(np.repeat(small, 2, 0), 2, 1)).all()
    for completion in tiles[1:]:
        means = completion.reshape(14, 2, 14, 2, 1).astype(float).mean((1, 3))
        assert np.abs(means - small).max() <= 1.0  # a gray level: the PNG's own rounding
    stdout, stderr = generated.communicate(timeout=300)
    assert generated.returncode == 0, stdout + stderr
    shown = base64.b64decode(upscale_page.locator("#upscale-image img").evaluate(FETCH_IMAGE))
    assert shown == (tmp_path / "up.png").read_bytes()
    with upscale_page.expect_download() as download:
        upscale_page.locator("#upscale-download").click()
    assert Path(download.value.path()).read_bytes() == shown


def test_upscale_reduces_a_28x28_upload_by_the_factor(upscale_page):
    """A 28x28 upload at factor 4: its 4x4 block means (shown over their blocks), three
    completions as the model's choice whose block means are those, then the upload itself."""
    from playwright.sync_api import expect

    garment = _garment()
    _upload(upscale_page, "top.png", _png(garment), tab="Upscale", box="upscale")
    upscale_page.get_by_label("4", exact=True).check()
    upscale_page.get_by_role("button", name="Upscale").click()
    expect(upscale_page.locator("#upscale-message")).to_contain_text(re.compile(
        r"top\.png at 7x7 \(its 4x4 block means\), then 3 completions at 28x28 as \w[\w/ -]* "
        r"\(the model's choice\) \(seed 0\), then the upload"))
    tiles = _upscaled_tiles(upscale_page, 5)
    means = garment.reshape(7, 4, 7, 4, 1).astype(float).mean((1, 3))
    assert np.abs(tiles[0].reshape(7, 4, 7, 4, 1).astype(float).mean((1, 3)) - means).max() <= 0.5
    for completion in tiles[1:4]:
        blocks = completion.reshape(7, 4, 7, 4, 1).astype(float).mean((1, 3))
        assert np.abs(blocks - means).max() <= 1.0  # within a gray level of the upload's
    assert (tiles[4] == garment).all()
    assert not (tiles[1] == tiles[2]).all()  # another request seed, another completion


def test_upscale_refuses_an_upload_of_another_size(upscale_page):
    from playwright.sync_api import expect

    _upload(upscale_page, "odd.png", _png(np.zeros([9, 9, 1], np.uint8)), tab="Upscale",
            box="upscale")
    upscale_page.get_by_role("button", name="Upscale").click()
    expect(upscale_page.locator("#upscale-message")).to_contain_text(
        "Refused: odd.png: is 9x9; expected 28x28 or 14x14 or 7x7")
    assert upscale_page.locator("#upscale-image img").count() == 0
