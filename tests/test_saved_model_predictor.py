"""cmsa_tf.saved_model_predictor without a model: reading answers and refusals."""

import numpy as np
import tensorflow as tf

from cmsa_tf import saved_model_predictor


def test_error_message_keeps_the_assertion_text():
    error = tf.errors.InvalidArgumentError(
        None,
        None,
        "Graph execution error:\n\nDetected at node x\n<stack traces unavailable>\n"
        "assertion failed: [image_bytes[0] is a truncated JPEG (no end-of-image marker).]\n"
        "\t [[{{node x}}]] [Op:__inference_f_1]",
    )
    assert (
        saved_model_predictor.error_message(error)
        == "image_bytes[0] is a truncated JPEG (no end-of-image marker)."
    )
    plain = tf.errors.InvalidArgumentError(
        None,
        None,
        "Graph execution error:\n\nDetected at node y\nInvalid JPEG data, size 300\n"
        "\t [[{{node y}}]]",
    )
    assert saved_model_predictor.error_message(plain) == "Invalid JPEG data, size 300"


def test_split_outputs_crops_each_example_and_reads_bytes_or_str():
    outputs = {
        "probabilities": np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4),
        "mask": np.ones((2, 3, 4), np.uint8),
        "height": np.array([3, 2]),
        "width": np.array([4, 1]),
        "word_attention": np.zeros((2, 3, 2), np.float32),
        "words": np.array([[5, 0], [6, 7]]),
        "tokens": np.array([[b"red", b""], ["big", "cat"]], dtype=object),
        "window": np.array([[32, 4, 0, 23, 32], [32, 0, 8, 32, 16]]),
        "level_names": np.array([[b"res5", b"res4", b"res3"], ["res5", "res4", "res3"]]),
    }
    first, second = saved_model_predictor.split_outputs(outputs)
    np.testing.assert_array_equal(first["probabilities"], outputs["probabilities"][0])
    assert second["probabilities"].shape == second["mask"].shape == (2, 1)
    assert first["tokens"] == ["red"] and second["tokens"] == ["big", "cat"]
    assert first["window"] == (32, 4, 0, 23, 32)
    assert first["level_names"] == second["level_names"] == ["res5", "res4", "res3"]
    assert "fused_scores" not in first  # an export without the Fig. 5 outputs


def test_refusal_message_speaks_of_the_image_and_the_expression():
    text = "assertion failed: [image_bytes[2] is a truncated JPEG.]\n\t [[{{node Assert}}]]"
    assert saved_model_predictor.refusal_message(text) == "the image is a truncated JPEG."
    error = tf.errors.InvalidArgumentError(None, None, "assertion failed: [expression[0] is bad.]")
    assert saved_model_predictor.refusal_message(error) == "the expression is bad."
