"""The web demo's two clients of an export's `serving_default`, behind one interface.

- `LocalClient`: the SavedModel loaded in this process
  (`cmsa_tf.saved_model_predictor.SavedModelPredictor`).
- `RestClient`: a TF Serving REST endpoint (`http://HOST:8501/v1/models/NAME`), sent the request of
  docs/serving.md ("REST request", column format) with the same inputs.

Both send one request per image, the image repeated once per expression, and read the answer with
`cmsa_tf.saved_model_predictor.split_outputs`, so the demo is a client of the export and nothing
else: no config, no checkpoint, no model code. A refused request raises
`cmsa_tf.saved_model_predictor.ItemError` with the export's own message ("the image is not a
JPEG, PNG, GIF or BMP file").
"""

from __future__ import annotations

import abc
import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence

import numpy as np

from cmsa_tf import saved_model_predictor
from cmsa_tf.export import saving

DEFAULT_TIMEOUT_S = 120.0


class ExportClient(abc.ABC):
    """What the demo needs from an export: `predict` and a one-line `description`."""

    description: str = ""

    @abc.abstractmethod
    def predict(self, image_bytes: bytes, expressions: Sequence[str]) -> list[dict]:
        """Segments `image_bytes` once per expression, in one request.

        Returns:
            one dict of `cmsa_tf.saved_model_predictor.split_outputs` per expression, in order.

        Raises:
            cmsa_tf.saved_model_predictor.ItemError: the export refused the request.
        """

    def warm_up(self) -> None:
        """Runs one small request, so that the first visitor does not wait for TF's first call."""
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (128, 64, 32)).save(buffer, format="PNG")
        self.predict(buffer.getvalue(), ["warm up"])

    def metadata(self) -> dict:
        """The export's `assets.extra/cmsa_export.json` when the client can read it, else {}."""
        return {}


def _check_request(image_bytes, expressions):
    if not isinstance(image_bytes, bytes):
        raise TypeError(f"image_bytes must be bytes, got {type(image_bytes).__name__}.")
    expressions = list(expressions)
    if not expressions or not all(isinstance(e, str) for e in expressions):
        raise ValueError(f"expressions must be a non-empty list of str, got {expressions!r}.")
    return expressions


class LocalClient(ExportClient):
    """The export in this process.

    Args:
        model: the export's base directory (`saved_models/NAME`) or a version directory.
        version: the version to load; default: the latest.

    Raises:
        cmsa_tf.saved_model_predictor.UsageError: no SavedModel there.
    """

    def __init__(self, model: str | os.PathLike, version: int | None = None):
        self.version_dir = saved_model_predictor.find_version_dir(model, version)
        self._predictor = saved_model_predictor.SavedModelPredictor(self.version_dir)
        self.description = f"SavedModel {self.version_dir}"

    def predict(self, image_bytes: bytes, expressions: Sequence[str]) -> list[dict]:
        expressions = _check_request(image_bytes, expressions)
        return self._predictor.predict_batch(
            [image_bytes] * len(expressions), [e.encode("utf-8") for e in expressions]
        )

    def metadata(self) -> dict:
        path = os.path.join(self.version_dir, "assets.extra", saving.METADATA_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}


class RestClient(ExportClient):
    """A TF Serving REST endpoint.

    Args:
        url: the model's URL, `http://HOST:8501/v1/models/NAME` (or `.../versions/N`); the request
            goes to `URL:predict`.
        timeout: seconds to wait for an answer.
    """

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_S):
        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")) or "/v1/models/" not in url:
            raise saved_model_predictor.UsageError(
                f"--server {url!r} must be a TF Serving model URL, "
                "http://HOST:8501/v1/models/NAME (optionally .../versions/N)."
            )
        self.url = url
        self.timeout = timeout
        self.description = f"TF Serving {url}"

    def request_body(self, image_bytes: bytes, expressions: Sequence[str]) -> dict:
        """The JSON body: docs/serving.md's column format, one example per expression."""
        expressions = _check_request(image_bytes, expressions)
        image = {"b64": base64.b64encode(image_bytes).decode("ascii")}
        return {
            "signature_name": "serving_default",
            "inputs": {"image_bytes": [image] * len(expressions), "expression": expressions},
        }

    def predict(self, image_bytes: bytes, expressions: Sequence[str]) -> list[dict]:
        body = json.dumps(self.request_body(image_bytes, expressions)).encode("utf-8")
        request = urllib.request.Request(
            self.url + ":predict", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise saved_model_predictor.ItemError(
                saved_model_predictor.refusal_message(_error_text(error))
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise saved_model_predictor.ItemError(
                f"TF Serving at {self.url} did not answer: {reason}"
            ) from None
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        if not isinstance(outputs, dict) or "mask" not in outputs:
            raise saved_model_predictor.ItemError(
                f"TF Serving at {self.url} answered without the outputs of serving_default "
                f"(keys: {sorted(answer) if isinstance(answer, dict) else type(answer).__name__})."
            )
        return saved_model_predictor.split_outputs(
            {key: _array(value) for key, value in outputs.items()}
        )


def _error_text(error: urllib.error.HTTPError) -> str:
    """TF Serving's `{"error": ...}` text of a failed request (or the HTTP status)."""
    try:
        payload = json.loads(error.read())
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            return payload["error"]
    except (OSError, ValueError):
        pass
    return f"HTTP {error.code} {error.reason}"


def _array(value) -> np.ndarray:
    """A JSON output as an array; string tensors stay str (`{"b64": ...}` ones become bytes)."""
    if isinstance(value, dict) and "b64" in value:
        return np.asarray(base64.b64decode(value["b64"]), dtype=object)
    if isinstance(value, list) and _holds_text(value):
        return np.asarray(_decode_b64(value), dtype=object)
    return np.asarray(value)


def _holds_text(value) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, (str, dict))


def _decode_b64(value):
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return value


def make_client(
    model: str | None = None, version: int | None = None, server: str | None = None
) -> ExportClient:
    """`RestClient(server)` when a server is given, else `LocalClient(model, version)`."""
    if (model is None) == (server is None):
        raise saved_model_predictor.UsageError(
            "Give exactly one of --model (a SavedModel) or --server (REST)."
        )
    if server is not None:
        if version is not None:
            raise saved_model_predictor.UsageError(
                "--version goes with --model; for --server put it in the URL "
                "(.../v1/models/NAME/versions/N)."
            )
        return RestClient(server)
    return LocalClient(model, version)
