"""The export module's signatures: a fresh-process load against the Keras model, saved_model_cli,
the documented REST / gRPC payloads, and bad and odd inputs."""

import base64
import io
import json
import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw

from cmsa_tf.export import module
from tests import helpers
from tests.export.common import (
    ATOL,
    assert_matches_reference,
    encode,
    reference,
    scene,
    serve,
    subprocess_env,
)

REPO = helpers.REPO


# ----------------------------------------------------------------------------------------------
# Equality with the Keras model, in a fresh process


FRESH_PROCESS_SCRIPT = textwrap.dedent("""
    import base64, json, sys
    import numpy as np
    import tensorflow as tf

    directory, inputs, output = sys.argv[1:]
    data = json.load(open(inputs))
    loaded = tf.saved_model.load(directory)
    served = loaded.signatures["serving_default"](
        image_bytes=tf.constant([base64.b64decode(b) for b in data["images"]]),
        expression=tf.constant(data["expressions"]))
    preprocessed = loaded.signatures["predict_preprocessed"](
        image=tf.constant(np.load(data["image"])), words=tf.constant(np.load(data["words"])))
    arrays = {"serve_" + k: v.numpy() for k, v in served.items()}
    arrays.update({"pp_" + k: v.numpy() for k, v in preprocessed.items()})
    arrays["serve_tokens"] = arrays["serve_tokens"].astype("S")
    arrays["serve_level_names"] = arrays["serve_level_names"].astype("S")
    np.savez(output, **arrays)
    print("cmsa_tf imported:", any(m.startswith("cmsa_tf") for m in sys.modules))
""")

FRESH_IMAGES = [
    encode(scene(40, 30, 0)),
    encode(scene(20, 50, 1), "JPEG", quality=90),
    encode(scene(33, 33, 2), "BMP"),
]
FRESH_EXPRESSIONS = ["The red square, on the left.", "zebra right of the green circle", "blue"]
CLI_IMAGE = encode(scene(24, 36, 3))
CLI_EXPRESSION = "the red square"


def _documented_input_exprs_script():
    """The Python snippet of docs/serving.md that writes --input_exprs for saved_model_cli."""
    text = (REPO / "docs" / "serving.md").read_text()
    match = re.search(r"python - photo\.jpg .*? <<'EOF'\n(.*?)\nEOF\n", text, flags=re.DOTALL)
    assert match, "docs/serving.md lost its saved_model_cli snippet"
    return match.group(1)


class Background:
    """Subprocesses started together (each imports TensorFlow: seconds apiece); results later."""

    def __init__(self):
        self._processes, self._results = {}, {}

    def start(self, name, args, cwd):
        self._processes[name] = subprocess.Popen(
            args,
            cwd=cwd,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(self, name):
        if name not in self._results:
            process = self._processes[name]
            stdout, stderr = process.communicate(timeout=300)
            self._results[name] = (process.returncode, stdout, stderr)
        return self._results[name]

    def close(self):
        for process in self._processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture(scope="module")
def background(exported, tmp_path_factory):
    """A fresh process loading the export, and saved_model_cli show / run, all at once."""
    directory = tmp_path_factory.mktemp("background")
    want = reference(exported, FRESH_IMAGES, FRESH_EXPRESSIONS)
    np.save(directory / "image.npy", want["image"])
    np.save(directory / "words.npy", want["words"])
    (directory / "inputs.json").write_text(
        json.dumps(
            {
                "images": [base64.b64encode(b).decode() for b in FRESH_IMAGES],
                "expressions": FRESH_EXPRESSIONS,
                "image": str(directory / "image.npy"),
                "words": str(directory / "words.npy"),
            }
        )
    )
    (directory / "script.py").write_text(FRESH_PROCESS_SCRIPT)
    (directory / "photo.png").write_bytes(CLI_IMAGE)
    (directory / "exprs.py").write_text(_documented_input_exprs_script())
    input_exprs = subprocess.run(
        [sys.executable, "exprs.py", "photo.png", CLI_EXPRESSION],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    cli = str(pathlib.Path(sys.executable).parent / "saved_model_cli")
    runs = Background()
    runs.start(
        "fresh",
        [sys.executable, "script.py", exported["version_dir"], "inputs.json", "out.npz"],
        directory,
    )
    runs.start("show", [cli, "show", "--all", "--dir", exported["version_dir"]], directory)
    runs.start(
        "run",
        [
            cli,
            "run",
            "--dir",
            exported["version_dir"],
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--input_exprs",
            input_exprs,
            "--outdir",
            str(directory / "cli_out"),
        ],
        directory,
    )
    yield {"runs": runs, "directory": directory, "want": want, "input_exprs": input_exprs}
    runs.close()


@pytest.mark.slow
def test_fresh_process_load_equals_keras_model(background):
    returncode, stdout, stderr = background["runs"].result("fresh")
    assert returncode == 0, stderr[-3000:]
    assert "cmsa_tf imported: False" in stdout  # the SavedModel alone is enough
    got = np.load(background["directory"] / "out.npz")
    want = background["want"]

    np.testing.assert_allclose(got["pp_logits"], want["logits"], atol=ATOL)
    np.testing.assert_allclose(
        got["pp_probabilities"], 1 / (1 + np.exp(-want["logits"])), atol=ATOL
    )
    np.testing.assert_allclose(got["pp_word_attention"], want["word_attention"], atol=ATOL)

    served = {key[len("serve_") :]: got[key] for key in got.files if key.startswith("serve_")}
    assert set(served) == set(module.SERVING_OUTPUTS)
    served["tokens"] = served["tokens"].astype(object)
    served["level_names"] = served["level_names"].astype(object)
    assert served["probabilities"].shape == (3, 40, 50)
    assert served["mask"].dtype == np.uint8 and served["probabilities"].dtype == np.float32
    assert_matches_reference(served, want)
    # Padding beyond each image's own size is zero.
    assert not served["probabilities"][1, 20:].any() and not served["mask"][0, :, 30:].any()
    # The model really looked at the words: attention sums to 1 over each level's real words.
    np.testing.assert_allclose(served["word_attention"].sum(-1), 1.0, atol=1e-4)
    padding = np.broadcast_to((want["words"] == 0)[:, None], served["word_attention"].shape)
    assert not served["word_attention"][padding].any()


@pytest.mark.slow
def test_saved_model_cli_show(background):
    returncode, text, stderr = background["runs"].result("show")
    assert returncode == 0, stderr[-3000:]
    assert "signature_def['serving_default']" in text
    assert "signature_def['predict_preprocessed']" in text
    serving = text.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    for name in ("image_bytes", "expression"):
        assert re.search(
            rf"inputs\['{name}'\] tensor_info:\s+dtype: DT_STRING\s+shape: \(-1\)", serving
        ), name
    for name, dtype in (
        ("probabilities", "DT_FLOAT"),
        ("mask", "DT_UINT8"),
        ("height", "DT_INT32"),
        ("width", "DT_INT32"),
        ("word_attention", "DT_FLOAT"),
        ("words", "DT_INT32"),
        ("tokens", "DT_STRING"),
    ):
        assert re.search(rf"outputs\['{name}'\] tensor_info:\s+dtype: {dtype}", serving), name


@pytest.mark.slow
def test_saved_model_cli_run_with_the_documented_input_exprs(background, loaded):
    # The documented snippet escapes every byte: no ';' for saved_model_cli to split on.
    assert ";" not in background["input_exprs"].split("];expression=")[0]
    returncode, _, stderr = background["runs"].result("run")
    assert returncode == 0, stderr[-3000:]
    want = serve(loaded, [CLI_IMAGE], [CLI_EXPRESSION])
    outdir = background["directory"] / "cli_out"
    for name in ("probabilities", "mask", "height", "width", "word_attention", "words"):
        got = np.load(outdir / f"{name}.npy")
        np.testing.assert_allclose(got, want[name], atol=1e-6, err_msg=name)
    assert np.load(outdir / "mask.npy").shape == (1, 24, 36)


# ----------------------------------------------------------------------------------------------
# The documented REST and gRPC payloads


def _decode_b64(value):
    """What TF Serving's REST API does with {"b64": ...} objects."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def _doc_json_blocks(marker):
    text = (REPO / "docs" / "serving.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    return [json.loads(block) for block in blocks if marker in block], text


@pytest.mark.slow
def test_documented_rest_request_runs_through_the_signature(exported, loaded):
    requests, text = _doc_json_blocks('"instances"')
    assert requests, "docs/serving.md has no JSON request with instances"
    for body in requests:
        assert body.get("signature_name", module.SERVING_SIGNATURE) in loaded.signatures
        instances = body["instances"]
        names = {key for instance in instances for key in instance}
        assert names == {"image_bytes", "expression"}
        batch = {name: [_decode_b64(instance[name]) for instance in instances] for name in names}
        got = serve(loaded, batch["image_bytes"], batch["expression"])
        direct = reference(exported, batch["image_bytes"], batch["expression"])
        assert_matches_reference(got, direct)
    # Every output is described in the response section.
    response = text.split("## Response", 1)[1]
    for name in module.SERVING_OUTPUTS:
        assert f"`{name}`" in response, name


@pytest.mark.slow
def test_grpc_tensor_protos_round_trip(exported, loaded):
    """The PredictRequest tensors of the documented gRPC client (make_tensor_proto) are accepted."""
    image = encode(scene(30, 20, 4), "JPEG")
    request = {
        "image_bytes": tf.make_tensor_proto([image], dtype=tf.string),
        "expression": tf.make_tensor_proto(["green circle"], dtype=tf.string),
    }
    outputs = loaded.signatures[module.SERVING_SIGNATURE](
        **{name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.items()}
    )
    response = {name: tf.make_tensor_proto(value) for name, value in outputs.items()}
    mask = tf.make_ndarray(response["mask"])
    assert mask.shape == (1, 30, 20) and mask.dtype == np.uint8
    assert_matches_reference(
        {name: tf.make_ndarray(proto) for name, proto in response.items()},
        reference(exported, [image], ["green circle"]),
    )


# ----------------------------------------------------------------------------------------------
# Bad and odd inputs


def _truncated_png_bomb(height, width):
    """A PNG signature and an IHDR claiming height x width, plus an IEND: no pixel data at all."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + (13).to_bytes(4, "big")
        + b"IHDR"
        + ihdr
        + b"\x00" * 4
        + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )


GOOD = encode(scene(16, 16, 5))


@pytest.mark.slow
@pytest.mark.parametrize(
    "images, expressions, message",
    [
        (
            [GOOD, b"this is not an image"],
            ["a", "b"],
            r"image_bytes\[1\] is not a JPEG, PNG, GIF or BMP file \(20 bytes",
        ),
        ([GOOD, b""], ["a", "b"], r"image_bytes\[1\] is empty \(0 bytes\)"),
        (
            [encode(scene(30, 30), "JPEG")[:300]],
            ["a"],
            r"image_bytes\[0\] is a truncated JPEG \(no end-of-image marker\)",
        ),
        ([encode(scene(30, 30))[:200]], ["a"], r"image_bytes\[0\] is a truncated PNG"),
        (
            [GOOD, _truncated_png_bomb(9000, 9000)],
            ["a", "b"],
            r"image_bytes\[1\] is 9000x9000 = 81000000 pixels, more than the 67108864 pixels",
        ),
        ([_truncated_png_bomb(9000, 9000)[:-12]], ["a"], r"image_bytes\[0\] is a truncated PNG"),
        ([GOOD], [b"caf\xe9 on the left"], r"expression\[0\] is not valid UTF-8 text"),
        ([GOOD, GOOD], ["only one"], r"image_bytes has 2 images but expression has 1"),
        ([], [], r"image_bytes is an empty batch"),
    ],
    ids=[
        "not_an_image",
        "empty_bytes",
        "truncated_jpeg",
        "truncated_png",
        "pixel_bomb",
        "truncated_pixel_bomb",
        "invalid_utf8",
        "batch_mismatch",
        "empty_batch",
    ],
)
def test_bad_inputs_fail_with_a_message_naming_the_problem(loaded, images, expressions, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve(loaded, images, expressions)
    # The model keeps serving after a refused request.
    assert serve(loaded, [GOOD], ["red"])["mask"].shape == (1, 16, 16)


@pytest.mark.slow
def test_odd_images_have_defined_results(exported, loaded):
    rgb = scene(12, 18, 6)
    gray = rgb[..., 0]
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    sixteen = gray.astype(np.uint16) * 257  # exact 8-bit values after TF's conversion
    images = {
        "one_pixel": encode(rgb[:1, :1]),
        "gray": encode(gray),
        "gray_as_rgb": encode(np.repeat(gray[..., None], 3, axis=-1)),
        "rgba": encode(rgba),
        "rgb": encode(rgb),
        "png16": encode(sixteen),
        "gif": encode(rgb, "GIF"),
        "bmp": encode(rgb, "BMP"),
    }
    assert Image.open(io.BytesIO(images["png16"])).mode.startswith("I;16")
    names = list(images)
    expressions = ["red square"] * len(names)
    got = serve(loaded, list(images.values()), expressions)
    assert_matches_reference(got, reference(exported, list(images.values()), expressions))
    index = {name: i for i, name in enumerate(names)}
    assert (got["height"][index["one_pixel"]], got["width"][index["one_pixel"]]) == (1, 1)
    for a, b in (("gray", "gray_as_rgb"), ("rgba", "rgb"), ("png16", "gray_as_rgb")):
        np.testing.assert_array_equal(
            got["probabilities"][index[a]], got["probabilities"][index[b]], err_msg=f"{a} vs {b}"
        )


@pytest.mark.slow
def test_odd_expressions_have_defined_results(exported, loaded):
    max_words = exported["config"].data.max_words
    vocabulary = exported["vocabulary"]
    long_expression = " ".join(["red", "blue", "square", "left"] * 125)  # 500 words
    expressions = ["", "   .  ", "zzzz qqqq", "?!", long_expression, "le garçon à gauche, 男人 red"]
    images = [encode(scene(16, 16, 7))] * len(expressions)
    got = serve(loaded, images, expressions)
    assert_matches_reference(got, reference(exported, images, expressions))
    assert np.isfinite(got["probabilities"]).all()
    # No token at all: zero real words, zero attention (defined by CrossModalSelfAttention).
    for row in (0, 1):
        assert not got["words"][row].any() and not got["word_attention"][row].any()
        assert got["tokens"][row].tolist() == [b""] * max_words
    # Unknown words and punctuation are <unk> words, seen by the model.
    assert got["words"][2].tolist()[:2] == [vocabulary.unk_id] * 2
    assert got["tokens"][3][0] == b"?!" and got["words"][3][0] == vocabulary.token_to_id("?!")
    # 500 words are cut to the first T.
    assert (got["words"][4] != 0).all()
    assert [t.decode() for t in got["tokens"][4]] == long_expression.split()[:max_words]
    # Non-ASCII text keeps its characters in the tokens.
    assert "gar" in [t.decode() for t in got["tokens"][5]]
    assert "ç" in b"".join(got["tokens"][5]).decode()
    # Without words the prediction does not depend on the image (documented).
    other = serve(loaded, [images[0], encode(scene(16, 16, 8))], ["", ""])
    np.testing.assert_array_equal(other["probabilities"][0], other["probabilities"][1])


@pytest.mark.slow
def test_8000x8000_image_is_served_at_full_size(loaded):
    picture = Image.new("RGB", (8000, 8000), (20, 40, 60))
    ImageDraw.Draw(picture).rectangle([1000, 2000, 5000, 7000], fill=(220, 20, 20))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=80)
    del picture
    got = serve(loaded, [buffer.getvalue()], ["the red square"])
    assert got["probabilities"].shape == (1, 8000, 8000) and got["mask"].shape == (1, 8000, 8000)
    assert (got["height"][0], got["width"][0]) == (8000, 8000)
    assert np.isfinite(got["probabilities"]).all()
    assert set(np.unique(got["mask"])) <= {0, 1}


@pytest.mark.slow
def test_predict_preprocessed_refuses_unknown_word_ids(exported, loaded):
    size, max_words = exported["config"].data.image_size, exported["config"].data.max_words
    image = np.zeros((1, size, size, 3), np.float32)
    words = np.zeros((1, max_words), np.int32)
    words[0, 0] = len(exported["vocabulary"])
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=rf"words holds ids outside \[0, {len(exported['vocabulary'])}\)",
    ):
        loaded.signatures[module.PREPROCESSED_SIGNATURE](image=image, words=words)
    words[0, 0] = -1
    with pytest.raises(tf.errors.InvalidArgumentError, match="words holds ids outside"):
        loaded.signatures[module.PREPROCESSED_SIGNATURE](image=image, words=words)
