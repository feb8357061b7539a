"""The demo's ShapesRef example row: a few generated scenes with one of their expressions each.

The scenes come from the ShapesRef generator (`cmsa_tf.data.shapes`) with fixed seeds, so the
row is the same on every start and needs no dataset on disk.
"""

from __future__ import annotations

import os

import numpy as np

from cmsa_tf.data.shapes.constants import DATASET as SHAPES_DATASET
from cmsa_tf.data.shapes.render import encode_jpeg
from cmsa_tf.data.shapes.scene import generate_scene

NUM_EXAMPLES = 4
IMAGE_SIZE = 160  # the generator's default image size
SEED = 2019

__all__ = ["SHAPES_DATASET", "write_examples"]


def write_examples(
    directory: str | os.PathLike, count: int = NUM_EXAMPLES, image_size: int = IMAGE_SIZE
) -> list[tuple[str, str]]:
    """Writes `count` ShapesRef scenes as JPEGs into `directory`.

    Returns:
        `[(image path, expression)]`: for each scene the first expression of one of its objects
        (the objects taken in turn).
    """
    os.makedirs(directory, exist_ok=True)
    examples = []
    for index in range(count):
        scene = generate_scene(np.random.default_rng([SEED, index]), image_size)
        described = [e for e in scene["expressions"] if e]
        if not described:
            continue
        _, sentence = described[index % len(described)][0]
        path = os.path.join(os.fspath(directory), f"shapes_example_{index}.jpg")
        with open(path, "wb") as f:
            f.write(encode_jpeg(scene["image"]))
        examples.append((path, sentence))
    return examples
