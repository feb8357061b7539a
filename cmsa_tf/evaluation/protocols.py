"""Evaluation protocols: how a prediction at the model's `S x S` input becomes a mask at the
original image size, with and without DenseCRF (`config.eval.protocol`).

- `"exact"` (`ExactProtocol`): undo the resize-and-pad exactly (`map_back.unpad_and_resize`:
  crop the pad, bilinear resize of the probabilities to the original size), foreground where the
  probability is `>= config.eval.threshold`. DenseCRF runs at the original size on the original
  image, with unaries clipped to finite values.
- `"authors"` (`AuthorsProtocol`): the test mode of the authors' `main_cmsa.py`. The `S x S`
  logits are thresholded at `>= 1e-9`, the binary map is mapped back with their
  `resize_and_crop` (`authors_map_back`: scale the square map by `max(h, w) / S` with skimage's
  bilinear resize, crop the centre `h x w`), and every non-zero pixel is foreground. DenseCRF runs
  at `S x S` on the padded uint8 image with unclipped unaries `-log(p)`, `-log(1 - p)`, and its
  label map takes the same map-back.

The two differ: the authors' centre crop in the `max(h, w)`-sized map is not the inverse of the
pad (the pad is centred at the `S` scale, before rounding), and a bilinear resize of a binary map
read as "non-zero" grows the mask by up to a pixel at its border. See docs/design.md,
"Preprocessing and the map back".

A protocol gives `mask(item)` and `crf_job(item)` for the items of
`evaluator.iterate_predictions`; `run_crf_job(job)` runs a job (in a worker process, too).
"""

from collections.abc import Callable

import numpy as np

from cmsa_tf.data import map_back
from cmsa_tf.data.image_io import decode_rgb
from cmsa_tf.evaluation.dense_crf import dense_crf

PROTOCOLS = map_back.MAP_BACKS  # ("exact", "authors")
# The authors' `score_thresh` on the logits.
AUTHORS_LOGIT_THRESHOLD = map_back.AUTHORS_LOGIT_THRESHOLD


def authors_map_back(padded_map, height: int, width: int) -> np.ndarray:
    """The authors' `resize_and_crop(padded_map, height, width)`: float64 [height, width].

    `map_back.authors_map_back` (the same TF ops the export runs in its graph) on a 2-D map.

    Args:
        padded_map: [S, S] (or [S1, S2]) real map at the model's input size.
        height, width: the original image size.
    """
    padded_map = np.asarray(padded_map)
    if padded_map.ndim != 2:
        raise ValueError(f"padded_map must be [S, S], got shape {padded_map.shape}.")
    return map_back.authors_map_back(padded_map[..., None], height, width).numpy()[..., 0]


def _exact_crf(image_bytes, probabilities):
    return dense_crf(decode_rgb(image_bytes), probabilities) > 0


def _authors_crf(padded_image, padded_probabilities, height, width):
    labels = dense_crf(padded_image, padded_probabilities, clip=False)  # [S, S]
    return authors_map_back(labels.astype(np.float32), height, width) > 0


def run_crf_job(job: tuple[Callable, tuple]) -> np.ndarray:
    """Runs a `crf_job(item)` of a protocol: a bool mask at the original size."""
    function, args = job
    return function(*args)


class ExactProtocol:
    """The exact map-back (module docstring). Args: threshold: the probability threshold."""

    name = "exact"

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold

    def mask(self, item: dict) -> np.ndarray:
        return item["probabilities"] >= self.threshold

    def crf_job(self, item: dict) -> tuple[Callable, tuple]:
        return _exact_crf, (item["image_bytes"], item["probabilities"])


class AuthorsProtocol:
    """The authors' map-back (module docstring)."""

    name = "authors"

    def mask(self, item: dict) -> np.ndarray:
        height, width = item["ground_truth"].shape
        binary = (item["padded_logits"] >= AUTHORS_LOGIT_THRESHOLD).astype(np.float32)
        return authors_map_back(binary, height, width) > 0

    def crf_job(self, item: dict) -> tuple[Callable, tuple]:
        height, width = item["ground_truth"].shape
        # The model's float32 sigmoid (exactly 0 or 1 far from 0, as theirs).
        probabilities = item["padded_probabilities"]
        return _authors_crf, (item["padded_image"], probabilities, height, width)


def get_protocol(protocol: str = "exact", threshold: float = 0.5):
    """`ExactProtocol(threshold)` for "exact", `AuthorsProtocol()` for "authors"."""
    if protocol == "exact":
        return ExactProtocol(threshold)
    if protocol == "authors":
        return AuthorsProtocol()
    raise ValueError(f"config.eval.protocol must be one of {PROTOCOLS}, got {protocol!r}.")
