"""What the export tests share: test pictures, calling `serving_default`, the Keras reference."""

import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from cmsa_tf import visualize
from cmsa_tf.data import map_back, preprocess
from cmsa_tf.data import tokenizer as tokenizer_lib
from cmsa_tf.export import module

STEP = 3
ATOL = 1e-5


def subprocess_env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    return env


def encode(array, fmt="PNG", **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def scene(height, width, seed=0):
    """A uint8 RGB picture with a few coloured rectangles on noise."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 60, (height, width, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle([width // 8, height // 4, width // 2, 3 * height // 4], fill=(220, 30, 30))
    draw.ellipse([width // 2, height // 8, 7 * width // 8, height // 2], fill=(30, 200, 40))
    return np.asarray(image)


def serve(loaded, images, expressions):
    outputs = loaded.signatures[module.SERVING_SIGNATURE](
        image_bytes=tf.constant(images, tf.string), expression=tf.constant(expressions, tf.string)
    )
    return {key: value.numpy() for key, value in outputs.items()}


def reference(exported, images, expressions):
    """The Keras model on the Python-side preprocessing: what serving_default must return."""
    config = exported["config"]
    size, max_words = config.data.image_size, config.data.max_words
    pixels, info = preprocess.preprocess_encoded_images(tf.constant(images, tf.string), size)
    words = np.stack([exported["vocabulary"].encode_padded(e, max_words)[0] for e in expressions])
    outputs = exported["model"]({"image": pixels, "words": words}, return_attention=True)
    probabilities = tf.sigmoid(outputs["logits"])
    restored = map_back.unpad_and_resize_batch(probabilities, info)[..., 0].numpy()
    tokens = [tokenizer_lib.tokenize(e)[:max_words] for e in expressions]
    # The Fig. 5 score maps, by visualize's NumPy convolution on the model's features.
    kernel, _ = visualize.score_weights(exported["model"])
    features = outputs["features"].numpy()  # [B, h, w, C]
    level_features = outputs["level_features"].numpy()  # [B, L, h, w, C]
    window_keys = ("pad_top", "pad_left", "resized_height", "resized_width")
    return {
        "image": pixels.numpy(),
        "logits": outputs["logits"].numpy()[..., 0],
        "probabilities": restored,
        "height": info["orig_height"].numpy(),
        "width": info["orig_width"].numpy(),
        "word_attention": outputs["word_attention"].numpy(),
        "words": words,
        "tokens": np.array(
            [[t.encode() for t in row] + [b""] * (max_words - len(row)) for row in tokens],
            dtype=object,
        ),
        "fused_scores": np.stack(
            [visualize.score_contributions(f, kernel).sum(-1) for f in features]
        ),
        "level_scores": np.stack(
            [
                [visualize.score_contributions(f, kernel).sum(-1) for f in row]
                for row in level_features
            ]
        ),
        "window": np.stack(
            [np.full(len(expressions), size)] + [info[key].numpy() for key in window_keys], axis=1
        ),
        "level_names": np.array(
            [[name.encode() for name in exported["model"].levels]] * len(expressions), dtype=object
        ),
    }


def assert_matches_reference(got, want):
    np.testing.assert_array_equal(got["height"], want["height"])
    np.testing.assert_array_equal(got["width"], want["width"])
    np.testing.assert_array_equal(got["words"], want["words"])
    assert got["tokens"].tolist() == want["tokens"].tolist()
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=ATOL)
    np.testing.assert_allclose(got["word_attention"], want["word_attention"], atol=ATOL)
    np.testing.assert_allclose(got["fused_scores"], want["fused_scores"], atol=ATOL)
    np.testing.assert_allclose(got["level_scores"], want["level_scores"], atol=ATOL)
    np.testing.assert_array_equal(got["window"], want["window"])
    assert got["level_names"].tolist() == want["level_names"].tolist()
    # The mask is the probability map thresholded at 0.5 (away from the threshold itself).
    clear = np.abs(want["probabilities"] - preprocess.MASK_THRESHOLD) > ATOL
    np.testing.assert_array_equal(
        got["mask"][clear], (want["probabilities"] >= preprocess.MASK_THRESHOLD)[clear]
    )
