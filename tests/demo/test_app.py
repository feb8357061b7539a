"""The demo's handler and page: inputs read, notes, refusals, and the `predict` API endpoint."""

import io
import socket

import numpy as np
import pytest
from PIL import Image

from cmsa_tf import predict
from cmsa_tf.demo import app as app_lib
from cmsa_tf.demo import client as client_lib
from cmsa_tf.demo import render
from cmsa_tf.evaluation.dense_crf import dense_crf
from tests.demo.conftest import encode, picture


@pytest.fixture(scope="module")
def local(tiny_export):
    return client_lib.LocalClient(tiny_export["base"])


@pytest.fixture(scope="module")
def segmenter(local):
    return app_lib.Segmenter(local)


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_parse_expressions():
    assert app_lib.parse_expressions(" red square \n\n  green circle\n") == [
        "red square",
        "green circle",
    ]
    for text in ("", "  \n ", None):
        with pytest.raises(app_lib.DemoInputError, match="Type an expression"):
            app_lib.parse_expressions(text)
    with pytest.raises(app_lib.DemoInputError, match="At most 8 expressions"):
        app_lib.parse_expressions("\n".join(["red"] * 9))


def test_read_image_downscales_an_8000x8000_photo(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (8000, 8000), (10, 200, 30)).save(buffer, format="PNG")
    data, notes = app_lib.read_image(_write(tmp_path, "big.png", buffer.getvalue()), 2048)
    with Image.open(io.BytesIO(data)) as smaller:
        assert smaller.size == (2048, 2048) and smaller.getpixel((5, 5)) == (10, 200, 30)
    assert len(notes) == 1 and "8000 x 8000" in notes[0] and "2048 x 2048" in notes[0]
    # Small images, and files that are not images, are sent as they are.
    small = encode(picture())
    assert app_lib.read_image(_write(tmp_path, "small.png", small), 2048) == (small, [])
    assert app_lib.read_image(_write(tmp_path, "x.txt", b"hello"), 2048) == (b"hello", [])
    with pytest.raises(app_lib.DemoInputError, match="empty"):
        app_lib.read_image(_write(tmp_path, "empty.png", b""), 2048)
    with pytest.raises(app_lib.DemoInputError, match="Upload, paste or take a picture"):
        app_lib.read_image(None)


def test_expression_notes():
    item = {"tokens": ["the", "red"], "words": np.array([4, 7, 0, 0])}
    assert app_lib.expression_notes(1, "the red", item) == []
    full = {"tokens": ["w"] * 4, "words": np.array([3, 3, 3, 3])}
    (note,) = app_lib.expression_notes(2, " ".join(["w"] * 500), full)
    assert "Expression 2 has 500 words" in note and "only its first 4 tokens" in note
    (note,) = app_lib.expression_notes(1, "le carré rouge", item)
    assert "non-ASCII characters (é)" in note
    with pytest.raises(app_lib.DemoInputError, match="no words after tokenisation"):
        app_lib.expression_notes(1, ".", {"tokens": [], "words": np.zeros(4)})


def test_run_draws_every_output_from_the_exports_answer(segmenter, local, tmp_path):
    image = picture(40, 56)
    path = _write(tmp_path, "p.png", encode(image))
    expressions = ["the red square", "green circle"]
    overlay, mask, files, attention, heat, report = segmenter.run(path, "\n".join(expressions))
    items = local.predict(encode(image), expressions)
    masks = [item["mask"].astype(bool) for item in items]
    np.testing.assert_array_equal(overlay, render.overlay(image, masks))
    np.testing.assert_array_equal(mask, render.mask_image(masks[0]))
    assert len(files) == 2
    for file, want in zip(files, masks):
        np.testing.assert_array_equal(np.asarray(Image.open(file)), render.mask_image(want))
    want_attention = render.stack(
        [render.attention_image(i, e) for e, i in zip(expressions, items)]
    )
    np.testing.assert_array_equal(attention, want_attention)
    assert len(heat) == 2 * 4  # fused + 3 levels, per expression
    assert "**Latency:**" in report and "| 2 | blue | green circle | green circle |" in report

    # A lower threshold grows the mask; DenseCRF gives dense_crf's mask.
    _, low, *_ = segmenter.run(path, "the red square", threshold=0.05)
    np.testing.assert_array_equal(low, render.mask_image(items[0]["probabilities"] >= 0.05))
    _, refined, *_ = segmenter.run(path, "the red square", crf=True)
    want = dense_crf(image, items[0]["probabilities"]).astype(bool)
    np.testing.assert_array_equal(refined, render.mask_image(want))


def test_run_refuses_bad_input_with_a_message(segmenter, tmp_path):
    good = _write(tmp_path, "p.png", encode(picture()))
    with pytest.raises(predict.ItemError, match="the image is not a JPEG, PNG, GIF or BMP"):
        segmenter.run(_write(tmp_path, "notes.txt", b"not an image"), "red")
    with pytest.raises(app_lib.DemoInputError, match="Type an expression"):
        segmenter.run(good, "   ")
    with pytest.raises(app_lib.DemoInputError, match="no words after tokenisation"):
        segmenter.run(good, ".")
    # Served, with notes: 500 words and non-ASCII text.
    *_, report = segmenter.run(good, "the red " + "square " * 498 + "\nle carré 赤い")
    assert "Expression 1 has 500 words but the model reads only its first 6" in report
    assert "Expression 2 has non-ASCII characters" in report


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_gradio_client_calls_the_predict_endpoint(local, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    app = app_lib.build_app(local)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        image = picture(40, 56)
        path = _write(tmp_path, "p.png", encode(image))
        overlay, mask, files, attention, heat, report = client.predict(
            handle_file(path), "the red square", api_name="/predict"
        )
        want = local.predict(encode(image), ["the red square"])[0]["mask"]
        np.testing.assert_array_equal(np.asarray(Image.open(mask)), render.mask_image(want))
        assert np.asarray(Image.open(overlay)).shape == (40, 56, 3)
        assert len(files) == 1 and len(heat) == 4
        assert np.asarray(Image.open(attention)).ndim == 3
        assert "Latency" in report
        with pytest.raises(AppError, match="the image is not a JPEG, PNG, GIF or BMP file"):
            client.predict(
                handle_file(_write(tmp_path, "x.txt", b"hi")), "red", api_name="/predict"
            )
        with pytest.raises(AppError, match="Type an expression"):
            client.predict(handle_file(path), "", api_name="/predict")
        # Still serving.
        _, again, *_ = client.predict(handle_file(path), "the red square", api_name="/predict")
        np.testing.assert_array_equal(np.asarray(Image.open(again)), render.mask_image(want))
    finally:
        app.close()


def test_shapes_examples_only_for_a_shapes_export(local, tmp_path):
    examples = app_lib.shapes_examples(local, str(tmp_path))
    assert len(examples) == 4
    for path, expression in examples:
        assert Image.open(path).size == (160, 160) and expression.strip()

    class Other(client_lib.ExportClient):
        def predict(self, image_bytes, expressions):
            raise AssertionError("shapes_examples must not predict")

        def metadata(self):
            return {"config": {"data": {"dataset": "refcoco"}}}

    assert app_lib.shapes_examples(Other(), str(tmp_path / "other")) == []
