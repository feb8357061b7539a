"""The demo's clients: the local SavedModel and a TF Serving REST endpoint give the same answer."""

import base64
import http.server
import json
import threading

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf import predict
from cmsa_tf.demo import client as client_lib
from tests.demo.conftest import encode, picture

EXPRESSIONS = ["the red square", "green circle at the top"]


@pytest.fixture(scope="module")
def local(tiny_export):
    return client_lib.LocalClient(tiny_export["base"])


@pytest.fixture(scope="module")
def loaded(tiny_export):
    return tf.saved_model.load(tiny_export["version_dir"])


class _TFServingStub(http.server.BaseHTTPRequestHandler):
    """TF Serving's REST `:predict` in the column format (docs/serving.md): `{"b64": ...}` inputs
    decoded to bytes, outputs as nested lists with strings as JSON strings, a refused request
    answered with HTTP 400 and `{"error": message}`."""

    signature = None
    requests = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body))
        inputs = body["inputs"]
        images = [base64.b64decode(image["b64"]) for image in inputs["image_bytes"]]
        try:
            outputs = self.signature(
                image_bytes=tf.constant(images, tf.string),
                expression=tf.constant(inputs["expression"], tf.string),
            )
        except tf.errors.InvalidArgumentError as error:
            return self._answer(400, {"error": error.message})
        answer = {}
        for name, value in outputs.items():
            value = value.numpy()
            if value.dtype == object:
                value = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(value)
            answer[name] = value.tolist()
        self._answer(200, {"outputs": answer})

    def _answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def rest_url(loaded):
    handler = type("Stub", (_TFServingStub,), {"signature": loaded.signatures["serving_default"]})
    handler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/models/shapes", handler
    server.shutdown()
    server.server_close()


def test_local_client_is_the_signature_cropped_per_expression(local, loaded):
    image = encode(picture(40, 56))
    items = local.predict(image, EXPRESSIONS)
    raw = loaded.signatures["serving_default"](
        image_bytes=tf.constant([image, image]), expression=tf.constant(EXPRESSIONS)
    )
    assert len(items) == 2
    for i, item in enumerate(items):
        np.testing.assert_array_equal(item["mask"], raw["mask"].numpy()[i, :40, :56])
        np.testing.assert_array_equal(item["probabilities"], raw["probabilities"].numpy()[i])
        np.testing.assert_array_equal(item["fused_scores"], raw["fused_scores"].numpy()[i])
        np.testing.assert_array_equal(item["level_scores"], raw["level_scores"].numpy()[i])
        assert item["window"] == tuple(raw["window"].numpy()[i])
        assert item["level_names"] == ["res5", "res4", "res3"]
    assert items[0]["tokens"] == ["the", "red", "square"]
    assert items[1]["tokens"] == ["green", "circle", "at", "the", "top"]
    # The window says where the 40 x 56 image lies in the 32 x 32 input: 23 x 32, 4 rows down.
    assert items[0]["window"] == (32, 4, 0, 23, 32)
    assert local.metadata()["config"]["data"]["dataset"] == "shapes"


def test_rest_client_sends_the_documented_request_and_reads_the_same_answer(local, rest_url):
    url, handler = rest_url
    rest = client_lib.RestClient(url)
    image = encode(picture(30, 20, seed=3), "JPEG")
    got, want = rest.predict(image, EXPRESSIONS), local.predict(image, EXPRESSIONS)
    path, body = handler.requests[-1]
    assert path == "/v1/models/shapes:predict"
    assert body["signature_name"] == "serving_default"
    assert body["inputs"]["expression"] == EXPRESSIONS
    assert [base64.b64decode(i["b64"]) for i in body["inputs"]["image_bytes"]] == [image] * 2
    assert len(got) == len(want) == 2
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], np.ndarray):
                np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=key)
            else:
                assert a[key] == b[key], key


def test_refusals_read_the_same_through_both_clients(local, rest_url):
    rest = client_lib.RestClient(rest_url[0])
    messages = []
    for client in (local, rest):
        with pytest.raises(predict.ItemError) as error:
            client.predict(b"hello, not an image", ["red"])
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("the image is not a JPEG, PNG, GIF or BMP file")


def test_rest_client_reports_an_unreachable_server():
    rest = client_lib.RestClient("http://127.0.0.1:9/v1/models/none", timeout=5)
    with pytest.raises(predict.ItemError, match="did not answer"):
        rest.predict(encode(picture()), ["red"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of --model"),
        ({"model": "m", "server": "http://h:8501/v1/models/x"}, "exactly one of --model"),
        ({"server": "h:8501/v1/models/x"}, "must be a TF Serving model URL"),
        ({"server": "http://h:8501/v1/models/x", "version": 3}, "put it in the URL"),
        ({"model": "/no/such/dir"}, "is not a directory"),
    ],
)
def test_make_client_usage_errors(kwargs, message):
    with pytest.raises(predict.UsageError, match=message):
        client_lib.make_client(**kwargs)


def test_requests_need_bytes_and_expressions(local):
    with pytest.raises(TypeError, match="image_bytes must be bytes"):
        local.predict("photo.png", ["red"])
    with pytest.raises(ValueError, match="non-empty list of str"):
        local.predict(encode(picture()), [])
