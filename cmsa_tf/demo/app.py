"""The Gradio page of cmsa-demo: an image and expressions in, the export's answer drawn out.

`build_app(client)` returns the `gr.Blocks`; `Segmenter` is its one handler, also the API endpoint
`predict` (inputs image, expressions, threshold, DenseCRF; outputs overlay, mask, mask files, word
attention (one picture), heat maps (a gallery), report), so `gradio_client` scripts can call it:

    from gradio_client import Client, handle_file
    overlay, mask, *rest = Client("http://127.0.0.1:7860/").predict(
        handle_file("photo.jpg"), "the big blue triangle", api_name="/predict")

Bad input (no image, a file that is not an image, no expression, an expression without words,
too many expressions) is refused with a message in the page (`gr.Error`); odd input (an image
larger than `max_side`, more words than the model reads, non-ASCII text) is served with a note in
the report. Either way the server keeps serving.
"""

from __future__ import annotations

import io
import os
import pathlib
import tempfile
import time

import gradio as gr
import numpy as np
from PIL import Image

from cmsa_tf import saved_model_predictor
from cmsa_tf.data import image_io, preprocess
from cmsa_tf.demo import examples as examples_lib
from cmsa_tf.demo import render
from cmsa_tf.demo.client import ExportClient

MAX_EXPRESSIONS = len(render.COLOURS)
DEFAULT_MAX_SIDE = 2048
TITLE = "CMSA: referring image segmentation"


class DemoInputError(ValueError):
    """Input the demo refuses; its message is shown in the page."""


def raw_image(**kwargs) -> gr.Image:
    """A `gr.Image` (type "filepath") that hands the handler the uploaded file as it is, even when
    PIL cannot open it.

    The export decodes the bytes itself and names the problem of a file that is not an image
    ("the image is not a JPEG, PNG, GIF or BMP file"); plain `gr.Image` would fail before the
    handler with a generic error. (An instance's `preprocess` is wrapped rather than the class
    subclassed: Gradio writes a `.pyi` stub next to the source of every component subclass.)
    """
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    checked = image.preprocess

    def preprocess(payload):
        try:
            return checked(payload)
        except (OSError, ValueError, Image.DecompressionBombError):
            if payload is not None and getattr(payload, "path", None):
                return str(payload.path)
            raise

    image.preprocess = preprocess
    return image


def parse_expressions(text: str | None) -> list[str]:
    """The non-empty lines of `text`, stripped (one expression a line)."""
    expressions = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not expressions:
        raise DemoInputError(
            'Type an expression, e.g. "the big blue triangle" (one per line for several).'
        )
    if len(expressions) > MAX_EXPRESSIONS:
        raise DemoInputError(
            f"At most {MAX_EXPRESSIONS} expressions at once (one colour each); got "
            f"{len(expressions)} lines."
        )
    return expressions


def read_image(path: str | os.PathLike | None, max_side: int = DEFAULT_MAX_SIDE):
    """`(image bytes to send, notes)`: the file's bytes, downscaled when larger than `max_side`.

    A file PIL cannot open is sent as it is: the export refuses it with its own message.
    """
    if path is None:
        raise DemoInputError("Upload, paste or take a picture first.")
    try:
        data = pathlib.Path(path).read_bytes()
    except OSError as error:
        raise DemoInputError(f"Cannot read the uploaded file: {error.strerror or error}.") from None
    if not data:
        raise DemoInputError("The uploaded file is empty: give a JPEG, PNG, GIF or BMP image.")
    if not max_side or image_io.image_format(data) is None:
        return data, []
    try:
        with Image.open(io.BytesIO(data)) as picture:
            width, height = picture.size
            if max(width, height) <= max_side:
                return data, []
            scale = max_side / max(width, height)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            smaller = picture.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    except (OSError, ValueError, Image.DecompressionBombError):
        return data, []  # truncated or odd: the export names the problem
    buffer = io.BytesIO()
    smaller.save(buffer, format="PNG")
    note = (
        f"The image is {width} x {height} pixels: the demo downscaled it to {size[0]} x {size[1]} "
        f"(longest side {max_side}, `--max_side`) before sending it; the model sees every image "
        "at its own input size anyway."
    )
    return buffer.getvalue(), [note]


def expression_notes(number: int, expression: str, item: dict) -> list[str]:
    """Notes about how the export read expression `number` (1-based); refuses one without words."""
    tokens, slots = item["tokens"], len(item["words"])
    if not tokens:
        raise DemoInputError(
            f'Expression {number} ("{expression}") has no words after tokenisation (only '
            "spaces or punctuation such as a lone '.'); the prediction would not depend on the "
            "image. Type some words."
        )
    notes = []
    written = len(expression.split())
    if len(tokens) == slots and written > slots:
        notes.append(
            f"Expression {number} has {written} words but the model reads only its first "
            f"{slots} tokens ({' '.join(tokens)}); the rest is ignored."
        )
    odd = sorted({c for c in expression if ord(c) > 127})
    if odd:
        notes.append(
            f"Expression {number} has non-ASCII characters ({''.join(odd[:12])}): the model's "
            "words are ASCII (letters, digits, _), so these are read as symbols, unknown words "
            f"to it. It read: {' | '.join(tokens)}."
        )
    return notes


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _report(description, expressions, items, masks, notes, model_ms, draw_ms, size):
    lines = [
        f"**Latency:** {model_ms:.0f} ms for the model (one request, {len(expressions)} "
        f"expression{'s' if len(expressions) > 1 else ''}) + {draw_ms:.0f} ms drawing = "
        f"{model_ms + draw_ms:.0f} ms. Image {size[1]} x {size[0]}; {description}.",
        "",
        "| # | colour | expression | words read | area |",
        "|---|---|---|---|---|",
    ]
    for number, (expression, item, mask) in enumerate(zip(expressions, items, masks), start=1):
        share = 100.0 * float(np.mean(mask)) if mask.size else 0.0
        words = _shorten(" ".join(item["tokens"])).replace("|", "\\|")
        shown = _shorten(expression).replace("|", "\\|")
        lines.append(
            f"| {number} | {render.COLOUR_NAMES[number - 1]} | {shown} | {words} | {share:.1f}% |"
        )
    if notes:
        lines += ["", "**Notes:**", *[f"- {note}" for note in notes]]
    return "\n".join(lines)


class Segmenter:
    """The page's handler: runs the client on the inputs and draws every output.

    Args:
        client: the export (`LocalClient` or `RestClient`).
        max_side: longer side above which images are downscaled before sending (0: never).
    """

    def __init__(self, client: ExportClient, max_side: int = DEFAULT_MAX_SIDE):
        self.client = client
        self.max_side = int(max_side)
        self._files = tempfile.mkdtemp(prefix="cmsa-demo-")

    def run(self, image_path, text, threshold=preprocess.MASK_THRESHOLD, crf=False) -> tuple:
        """The outputs for one submission; raises `DemoInputError` or
        `saved_model_predictor.ItemError`."""
        start = time.perf_counter()
        expressions = parse_expressions(text)
        data, notes = read_image(image_path, self.max_side)
        items = self.client.predict(data, expressions)
        model_ms = 1000.0 * (time.perf_counter() - start)
        for number, (expression, item) in enumerate(zip(expressions, items), start=1):
            notes += expression_notes(number, expression, item)

        drawing = time.perf_counter()
        image = image_io.decode_rgb(data)  # as the export decoded it
        masks = []
        for item in items:
            if crf:
                from cmsa_tf.evaluation.dense_crf import dense_crf

                masks.append(dense_crf(image, item["probabilities"]).astype(bool))
            else:
                masks.append(render.binary_mask(item, threshold, preprocess.MASK_THRESHOLD))
        directory = tempfile.mkdtemp(dir=self._files)
        files = []
        for number, mask in enumerate(masks, start=1):
            path = os.path.join(directory, f"mask_{number}.png")
            files.append(str(render.visualize.save_png(path, render.mask_image(mask))))
        attention = render.stack(
            [render.attention_image(item, e) for e, item in zip(expressions, items)]
        )
        heat = []
        for expression, item in zip(expressions, items):
            heat += render.heat_map_images(item, image, expression)
        draw_ms = 1000.0 * (time.perf_counter() - drawing)
        report = _report(
            self.client.description,
            expressions,
            items,
            masks,
            notes,
            model_ms,
            draw_ms,
            image.shape[:2],
        )
        return (
            render.overlay(image, masks),
            render.mask_image(masks[0]),
            files,
            attention,
            heat,
            report,
        )

    def __call__(self, image, expression, threshold=preprocess.MASK_THRESHOLD, crf=False):
        """The page's and the API's handler: `run`, with refusals shown in the page."""
        try:
            return self.run(image, expression, threshold, crf)
        except (DemoInputError, saved_model_predictor.ItemError) as error:
            raise gr.Error(str(error), duration=None) from None


def build_app(
    client: ExportClient,
    examples: list[tuple[str, str]] | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
) -> gr.Blocks:
    """The demo's `gr.Blocks` on `client`; `examples`: (image path, expression) pairs to click."""
    segmenter = Segmenter(client, max_side)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(
            f"# {TITLE}\n"
            "Give a picture and one or several expressions (one per line, each drawn in its own "
            "colour). The model's answer comes from the export's `serving_default` signature "
            f"({client.description})."
        )
        with gr.Row():
            with gr.Column():
                image = raw_image(
                    label="Image (upload, paste or webcam)",
                    sources=["upload", "clipboard", "webcam"],
                    elem_id="input-image",
                )
                text = gr.Textbox(
                    label="Expressions (one per line)",
                    placeholder="the big blue triangle",
                    lines=3,
                    elem_id="expressions",
                )
                threshold = gr.Slider(
                    0.0,
                    1.0,
                    value=preprocess.MASK_THRESHOLD,
                    step=0.01,
                    label="Mask threshold (0.5: the export's own mask)",
                )
                crf = gr.Checkbox(False, label="DenseCRF refinement (the authors' settings)")
                button = gr.Button("Segment", variant="primary", elem_id="segment")
                if examples:
                    gr.Examples(
                        examples=[list(example) for example in examples],
                        inputs=[image, text],
                        label="ShapesRef examples (click one, then Segment)",
                    )
            with gr.Column():
                overlay = gr.Image(label="Overlay", format="png", elem_id="overlay")
                mask = gr.Image(
                    label="Mask of the first expression (PNG, 255 = referred region)",
                    format="png",
                    image_mode="L",
                    elem_id="mask",
                )
                files = gr.File(label="Masks (PNG, one per expression)", file_count="multiple")
                report = gr.Markdown(label="Report", elem_id="report")
        gallery = {"format": "png", "object_fit": "contain", "height": "auto"}
        attention = gr.Image(
            label="Word attention per level (the paper's Fig. 4), one matrix per expression",
            format="png",
        )
        heat = gr.Gallery(
            label="Heat maps: fused, then per level (the paper's Fig. 5)", columns=4, **gallery
        )
        inputs = [image, text, threshold, crf]
        outputs = [overlay, mask, files, attention, heat, report]
        button.click(segmenter, inputs, outputs, api_name="predict")
        text.submit(segmenter, inputs, outputs, api_name=False)
    return app


def shapes_examples(client: ExportClient, directory: str) -> list[tuple[str, str]]:
    """The ShapesRef example row when the export was trained on ShapesRef, else []."""
    config = client.metadata().get("config") or {}
    if (config.get("data") or {}).get("dataset") != examples_lib.SHAPES_DATASET:
        return []
    return examples_lib.write_examples(directory)
