"""The demo page: a Gradio app over one exported SavedModel, with a tab per application.

The page loads a version with `cvae.serving.generate.load` (`tf.saved_model.load`, no training code) and
calls only its signatures. Each tab is an `Application`, shown when the export has every
signature it calls; a new application is a build function and a line in `APPLICATIONS`. The
requests themselves (`generate_png`, `restyle_png`, `inpaint_png`, `denoise_png`,
`upscale_png`, `classify_text`) take plain values, return PNG bytes or text and raise
`RequestError` (a ValueError) with the message the page shows; Gradio is imported only by
`build` and `serve`. What the page refuses: docs/demo.md. The page is one idea, one module past
450 lines: a tab is its request function and its layout, and a reader finds both here.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from cvae.serving import generate
from cvae import images, limits, options
from cvae.applications import corruptions
from cvae.batches import seeds_for
from cvae.serving import applications as served
from cvae.errors import op_error_text
from cvae.files import atomic_write_bytes
from cvae.serving.generate import ServedModel

# The seed's bounds and the mask names are those of `pipelines.generate` and `pipelines.client`
# (`cvae.options`); a browser sends numbers as doubles, exact far past MAX_SEED.
MAX_SEED = options.MAX_SEED
MAX_UPLOAD = "1mb"  # a 28x28 PNG is well under 1 KB; Gradio refuses bigger uploads itself
DEFAULT_IMAGES = 16  # as `pipelines.generate --num`
INPAINT_MASKS = options.MASK_NAMES
# The In-painting tab's completions: those of `pipelines.generate --inpaint --num 3 --seed s`
# (and the Upscale tab's, of `pipelines.generate --upscale --num 3 --seed s`).
COMPLETIONS = 3
# The Upscale tab: a 28x28 upload is first reduced to 14x14 (factor 2) or 7x7 (4) by the mean
# of each block, so the page shows what the model recovers beside the upload itself; a 14x14 or
# 7x7 upload is taken as it is, its factor from its size (docs/demo.md).
UPSCALE_FACTORS = (2, 4)
UPLOAD_SIDES = (28, 14, 7)
MODEL_CHOICE = "the model's choice"  # the Upscale tab's class when none is given (label -1)


class RequestError(ValueError):
    """A request the page refuses; its message is what the page shows."""


def _whole_number(value, what: str, low: int, high: int) -> int:
    """`value` (a number from the page, or None when the field is empty) as an int in
    [low, high]; RequestError naming the bound otherwise."""
    if value is None or value == "":
        raise RequestError(f"give the {what} ({low}..{high})")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"the {what} must be a whole number {low}..{high}, got {value!r}") \
            from None
    if not number.is_integer() or not low <= number <= high:
        # A whole number in full: "2147483646", not the "2.14748e+09" of :g.
        shown = int(number) if number.is_integer() else f"{number:g}"
        raise RequestError(f"the {what} must be a whole number {low}..{high}, got {shown}")
    return int(number)


def _label(model: ServedModel, label) -> int:
    try:
        return model.label_id(label)
    except ValueError as e:
        raise RequestError(str(e)) from None


def generate_png(model: ServedModel, label, num, seed) -> tuple[bytes, str]:
    """The grid PNG of `num` images of class `label` from `seed`, byte for byte the file
    `pipelines.generate --label L --num N --seed S` writes, and a caption."""
    label_id = _label(model, label)
    num = _whole_number(num, "number of images", 1, limits.MAX_DEMO_IMAGES)
    seed = _whole_number(seed, "seed", 0, MAX_SEED)
    out = generate.samples(model, label_id, num, seed)
    png = images.png_bytes(images.grid(out, generate.grid_columns(num)))
    return png, f"{num} x {model.class_names[label_id]} (seed {seed})"


def _garment(data: bytes, name: str) -> np.ndarray:
    """The upload as float32 [28, 28, 1] in [0, 1]; RequestError saying what it is instead."""
    try:
        return images.decode_png_28x28(data, name)
    except images.ImageError as e:
        raise RequestError(str(e)) from None


def restyle_png(model: ServedModel, data: bytes, name: str, label) -> tuple[bytes, str]:
    """The uploaded garment (the bytes of a 28x28 8-bit grayscale PNG called `name`, of class
    `label`) beside itself redrawn as every class, as a labelled PNG, and a caption. Its code is
    the posterior mean under `label`, decoded with each class in turn (the `restyle`
    signature)."""
    from cvae import plots  # matplotlib, for the column titles

    source = _garment(data, name)
    label_id = _label(model, label)
    n = len(model.class_names)
    out = generate.restyle(model, np.repeat(source[np.newaxis], n, axis=0), [label_id] * n,
                           list(range(n)))
    png = plots.image_table(np.concatenate([source[np.newaxis], out]), 1, n + 1,
                            column_names=["upload"] + model.class_names, scale=0.9)
    return png, f"{name} ({model.class_names[label_id]}) as every class"


def inpaint_png(model: ServedModel, data: bytes, name: str, label, mask_kind: str,
                seed) -> tuple[bytes, str]:
    """The uploaded garment (as for `restyle_png`) with the pixels a standard mask (a name in
    INPAINT_MASKS) says are missing drawn mid-gray, then COMPLETIONS completions as class
    `label` from `seed` (the `inpaint` signature, with the request seeds `seeds_for` derives
    from it), in one row of a pixel grid (`images.grid`: each 28x28 tile exact, 2 black pixels
    apart), and a caption: byte for byte the file `pipelines.generate --inpaint IMAGE --mask
    MASK --label L --num 3 --seed S` writes. The known pixels of every completion are the
    upload's."""
    source = _garment(data, name)
    label_id = _label(model, label)
    if mask_kind not in INPAINT_MASKS:
        raise RequestError(f"choose the missing pixels: one of {', '.join(INPAINT_MASKS)}")
    seed = _whole_number(seed, "seed", 0, MAX_SEED)
    mask = corruptions.mask(mask_kind)[0]
    out = served.inpaint(model, np.repeat(source[np.newaxis], COMPLETIONS, 0),
                         np.repeat(mask[np.newaxis], COMPLETIONS, 0), [label_id] * COMPLETIONS,
                         seeds_for(seed, COMPLETIONS))
    shown = served.shown_masked(source[np.newaxis], mask[np.newaxis])
    png = images.png_bytes(images.grid(np.concatenate([shown, out]), COMPLETIONS + 1))
    return png, (f"{name} with its {mask_kind.replace('-', ' ')} missing (gray), then "
                 f"{COMPLETIONS} completions as {model.class_names[label_id]} (seed {seed})")


def denoise_png(model: ServedModel, data: bytes, name: str, label) -> tuple[bytes, str]:
    """The uploaded garment (as for `restyle_png`) beside itself cleaned as class `label` (the
    `denoise` signature), as a pixel grid of two tiles, and a caption."""
    source = _garment(data, name)
    label_id = _label(model, label)
    out = served.denoise(model, source[np.newaxis], [label_id])
    png = images.png_bytes(images.grid(np.concatenate([source[np.newaxis], out]), 2))
    return png, f"{name}, then denoised as {model.class_names[label_id]}"


def upscale_png(model: ServedModel, data: bytes, name: str, label, factor,
                seed) -> tuple[bytes, str]:
    """A garment at 14x14 or 7x7 drawn at 28x28 (the `upscale` signature): the upload (the
    bytes of an 8-bit grayscale PNG called `name`, 28x28, 14x14 or 7x7), at low resolution
    shown over its blocks, then COMPLETIONS completions from `seed` as class `label`
    (MODEL_CHOICE or None: the model's choice), in one row of a pixel grid, and a caption. A
    28x28 upload is reduced by the block means of `factor` (2 or 4) and shown last as the
    truth; a 14x14 or 7x7 one is taken as it is (its factor from its size), and the picture is
    byte for byte the file `pipelines.generate --upscale IMAGE [--label L] --num 3 --seed S`
    writes."""
    try:
        upload = images.decode_png_28x28(data, name, sides=UPLOAD_SIDES)
    except images.ImageError as e:
        raise RequestError(str(e)) from None
    label_id = None if label in (None, "", MODEL_CHOICE) else _label(model, label)
    if str(factor) not in tuple(map(str, UPSCALE_FACTORS)):
        raise RequestError(f"choose the factor: 2 (a 28x28 upload seen at 14x14) or 4 (at 7x7), "
                           f"got {factor!r}")
    seed = _whole_number(seed, "seed", 0, MAX_SEED)
    if upload.shape[0] == 28:
        factor = int(factor)
        low = served.block_means(upload[np.newaxis], factor)[0]
        how = f"its {factor}x{factor} block means"
    else:
        low, factor = upload, 28 // upload.shape[0]
        how = f"as uploaded: factor {factor}"
    tiles, _, chosen = served.upscale_completions(model, low, label_id, COMPLETIONS, seed)
    if upload.shape[0] == 28:
        tiles = np.concatenate([tiles, upload[np.newaxis]])
    side = low.shape[0]
    whose = f" ({MODEL_CHOICE})" if label_id is None else ""
    caption = (f"{name} at {side}x{side} ({how}), then {COMPLETIONS} completions at 28x28 as "
               f"{model.class_names[chosen]}{whose} (seed {seed})")
    if upload.shape[0] == 28:
        caption += ", then the upload"
    return images.png_bytes(images.grid(tiles, len(tiles))), caption


def classify_text(model: ServedModel, data: bytes, name: str) -> str:
    """The uploaded garment's class and its probability, the top three, the log-likelihood
    and the typicality (nats) from the `classify` signature: the line `pipelines.classify`
    prints."""
    out = served.classify(model, _garment(data, name)[np.newaxis])
    return served.describe(name, out, 0, model.class_names)


def request_message(error: Exception) -> str | None:
    """The message the page shows for an error of the request; None for a bug (which Gradio
    reports as a bare "Error", without its traceback)."""
    if isinstance(error, tf.errors.OpError):  # the export's own checks, e.g. pixel range
        return op_error_text(error.message)
    if isinstance(error, ValueError):
        return str(error)
    return None


class Outputs:
    """The PNG files the page shows and offers for download, in one folder. A file is named
    after its request, so asking again rewrites the same file."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def write(self, name: str, data: bytes) -> str:
        stem = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "image"
        path = self.folder / f"{stem}.png"
        atomic_write_bytes(path, data)
        return str(path)


@dataclasses.dataclass(frozen=True)
class Application:
    """One tab: `build(model, outputs)` lays out its components and events inside the tab; the
    tab is shown when the export has every signature in `signatures`."""

    title: str
    signatures: tuple[str, ...]
    build: Callable[[ServedModel, Outputs], None]


def _refused(message: str) -> str:
    return f"**Refused:** {message}"


def _generate_tab(model: ServedModel, outputs: Outputs) -> None:
    import gradio as gr

    temperature = model.config.get("model", {}).get("temperature")
    with gr.Row():
        with gr.Column(scale=1):
            label = gr.Dropdown(model.class_names, value=model.class_names[0], label="Class")
            # No precision: Gradio would round 2.5 to 2; `generate_png` refuses it instead.
            num = gr.Number(DEFAULT_IMAGES, label="Number of images",
                            info=f"1 to {limits.MAX_DEMO_IMAGES}")
            seed = gr.Number(0, label="Seed", info="the same seed gives the same images")
            gr.Markdown(f"Sampling temperature: {temperature}, fixed when this version was "
                        f"exported (its signatures take no temperature)."
                        if temperature is not None else
                        "The sampling temperature is fixed by the export.")
            button = gr.Button("Generate", variant="primary")
        with gr.Column(scale=2):
            image = gr.Image(label="Samples", type="filepath", format="png", interactive=False,
                             buttons=["fullscreen"], height=420, show_label=False,
                             elem_id="generate-image")
            download = gr.DownloadButton("Download PNG", interactive=False,
                                         elem_id="generate-download")
            message = gr.Markdown(elem_id="generate-message")

    def run(label_value, num_value, seed_value):
        try:
            png, caption = generate_png(model, label_value, num_value, seed_value)
        except Exception as e:  # noqa: BLE001 -- a bug is re-raised below
            text = request_message(e)
            if text is None:
                raise
            return None, gr.DownloadButton(value=None, interactive=False), _refused(text)
        path = outputs.write(caption, png)
        return path, gr.DownloadButton(value=path, interactive=True), \
            f"{caption}, model version {model.version}"

    button.click(run, [label, num, seed], [image, download, message])


def _upload_box(tab: str, sizes: str = "A 28x28"):
    import gradio as gr

    return gr.File(label=f"{sizes} 8-bit grayscale PNG: a white garment on black, like "
                         f"Fashion-MNIST", type="filepath", elem_id=f"{tab}-upload")


def _picture(tab: str, label: str):
    """The image, download button and message of a tab that answers with a PNG."""
    import gradio as gr

    image = gr.Image(label=label, type="filepath", format="png", interactive=False,
                     buttons=["fullscreen"], show_label=False, elem_id=f"{tab}-image")
    with gr.Row():
        download = gr.DownloadButton("Download PNG", interactive=False,
                                     elem_id=f"{tab}-download")
        message = gr.Markdown(elem_id=f"{tab}-message")
    return image, download, message


def _png_answer(outputs: Outputs, tab: str, request, path, *values):
    """What a picture tab shows for the upload at `path`: `request(data, name, *values)` (PNG
    bytes and a caption) as (image, download, message), or its refusal."""
    import gradio as gr

    empty = gr.DownloadButton(value=None, interactive=False)
    if not path:
        return None, empty, "Upload a PNG first."
    name = Path(path).name
    try:
        data = Path(path).read_bytes()
        png, caption = request(data, name, *values)
    except Exception as e:  # noqa: BLE001 -- a bug is re-raised below
        text = request_message(e)
        if text is None:
            raise
        return None, empty, _refused(text)
    digest = hashlib.sha256(data).hexdigest()[:12]
    out = outputs.write(f"{tab} {Path(name).stem} {' '.join(map(str, values))} {digest}", png)
    return out, gr.DownloadButton(value=out, interactive=True), caption


def _class_upload_tab(model: ServedModel, outputs: Outputs, tab: str, label_text: str,
                      button_text: str, caption: str, answer) -> None:
    """An upload, its class and a button; `answer(model, path, label)` gives the picture (the
    Restyle and Denoise tabs)."""
    import gradio as gr

    with gr.Row():
        upload = _upload_box(tab)
        with gr.Column():
            label = gr.Dropdown(model.class_names, value=model.class_names[0],
                                label=label_text)
            button = gr.Button(button_text, variant="primary")
    image, download, message = _picture(tab, caption)

    def run(path, label_value):
        return _png_answer(outputs, tab, functools.partial(answer, model), path, label_value)

    # always_last: a class chosen while the upload is still being answered is not dropped.
    gr.on([upload.upload, label.change, button.click], run, [upload, label],
          [image, download, message], trigger_mode="always_last")


def _restyle_tab(model: ServedModel, outputs: Outputs) -> None:
    _class_upload_tab(model, outputs, "restyle", "The upload is a", "Restyle",
                      "Restyled as every class", restyle_png)


def _inpaint_tab(model: ServedModel, outputs: Outputs) -> None:
    import gradio as gr

    with gr.Row():
        upload = _upload_box("inpaint")
        with gr.Column():
            label = gr.Dropdown(model.class_names, value=model.class_names[0],
                                label="In-paint as")
            mask = gr.Dropdown(list(INPAINT_MASKS), value=INPAINT_MASKS[0],
                               label="Missing pixels")
            seed = gr.Number(0, label="Completion seed",
                             info="the same seed gives the same completions")
            button = gr.Button("In-paint", variant="primary")
    image, download, message = _picture("inpaint", "Masked upload and its completions")

    def run(path, label_value, mask_value, seed_value):
        return _png_answer(outputs, "inpaint", functools.partial(inpaint_png, model), path,
                           label_value, mask_value, seed_value)

    button.click(run, [upload, label, mask, seed], [image, download, message],
                 trigger_mode="always_last")


def _denoise_tab(model: ServedModel, outputs: Outputs) -> None:
    _class_upload_tab(model, outputs, "denoise", "Denoise as", "Denoise",
                      "The upload and its denoised version", denoise_png)


def _upscale_tab(model: ServedModel, outputs: Outputs) -> None:
    import gradio as gr

    with gr.Row():
        upload = _upload_box("upscale", "A 28x28, 14x14 or 7x7")
        with gr.Column():
            factor = gr.Radio([str(f) for f in UPSCALE_FACTORS], value="2", label="Factor",
                              info="a 28x28 upload is first reduced to 14x14 (2) or 7x7 (4) "
                                   "by the mean of each block; a 14x14 or 7x7 upload is "
                                   "taken as it is")
            label = gr.Dropdown([MODEL_CHOICE] + list(model.class_names), value=MODEL_CHOICE,
                                label="Upscale as")
            seed = gr.Number(0, label="Upscale seed",
                             info="the same seed gives the same completions")
            button = gr.Button("Upscale", variant="primary")
    image, download, message = _picture("upscale", "Low-resolution input and its completions")

    def run(path, factor_value, label_value, seed_value):
        return _png_answer(outputs, "upscale", functools.partial(upscale_png, model), path,
                           label_value, factor_value, seed_value)

    button.click(run, [upload, factor, label, seed], [image, download, message],
                 trigger_mode="always_last")


def _classify_tab(model: ServedModel, outputs: Outputs) -> None:
    import gradio as gr

    upload = _upload_box("classify")
    button = gr.Button("Classify", variant="primary")
    message = gr.Markdown(elem_id="classify-message")

    def run(path):
        if not path:
            return "Upload a PNG first."
        try:
            return classify_text(model, Path(path).read_bytes(), Path(path).name)
        except Exception as e:  # noqa: BLE001 -- a bug is re-raised below
            text = request_message(e)
            if text is None:
                raise
            return _refused(text)

    gr.on([upload.upload, button.click], run, [upload], [message], trigger_mode="always_last")


# The tabs, in page order.
APPLICATIONS = (
    Application("Generate", ("serving_default",), _generate_tab),
    Application("Restyle", ("restyle",), _restyle_tab),
    Application("In-painting", ("inpaint",), _inpaint_tab),
    Application("Denoise", ("denoise",), _denoise_tab),
    Application("Upscale", ("upscale",), _upscale_tab),
    Application("Classify", ("classify",), _classify_tab),
)

# Fits an image to its box, keeping the pixels of a 28x28 garment sharp as it is enlarged.
CSS = ("#generate-image img, #restyle-image img, #inpaint-image img, #denoise-image img, "
       "#upscale-image img "
       "{ width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }")


def build(model: ServedModel, outputs: Outputs):
    """The page as a `gradio.Blocks`, with a tab for every application the export supports."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # the page makes no outside requests
    import gradio as gr

    shown = [app for app in APPLICATIONS if all(s in model.signatures for s in app.signatures)]
    with gr.Blocks(title="CVAE demo", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as page:
        gr.Markdown(f"# Fashion-MNIST garments by label\nA conditional VAE, served from "
                    f"`{model.path}` (version {model.version}): "
                    f"{', '.join(app.title.lower() for app in shown)}.")
        with gr.Tabs():
            for app in shown:
                with gr.Tab(app.title, id=app.title.lower()):
                    app.build(model, outputs)
    return page


def serve(model_dir: str | os.PathLike, version: int | None = None, host: str = "127.0.0.1",
          port: int = 7860) -> None:
    """Loads the model and serves the page on http://host:port until interrupted."""
    model = generate.load(model_dir, version)
    with tempfile.TemporaryDirectory(prefix="cvae-demo-") as folder:
        page = build(model, Outputs(folder))
        page.launch(server_name=host, server_port=port, quiet=True, show_error=False,
                    ssr_mode=False, max_file_size=MAX_UPLOAD, footer_links=[],
                    run_history=False, css=CSS, prevent_thread_lock=True)
        print(f"demo of {model.path} at http://{host}:{port} (Ctrl+C stops it)", flush=True)
        try:
            while page.is_running:
                time.sleep(0.2)
        finally:
            page.close()
