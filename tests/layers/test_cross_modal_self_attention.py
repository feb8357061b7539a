"""Eq. 2-4: both forms, all implementations, against each other and against NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers.cross_modal_self_attention import CrossModalSelfAttention
from tests.helpers import run_layer_test

B, H, W, T, CV, CL, D = 2, 3, 4, 5, 6, 5, 4
C = CV + CL + 8
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
# Index of the key bias among [d visual, d words] + trainable weights (paper form).
KEY_BIAS = 2 + 3
IMPLEMENTATIONS = {"paper": ("factorized", "dense"), "official": ("chunked", "dense")}
# The paper form's two factorised kernels: the position softmax's mean over words as a product
# of exponentials where exact (the default), or word by word.
FACTORIZED = ["factorized", "factorized_per_word"]


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    return rng.normal(size=(B, H, W, CV)), rng.normal(size=(B, T, CL)), MASK


def make_layers(form, implementations, inputs, dtype="float64", **kwargs):
    """Builds one layer per implementation, all sharing the first one's weights."""
    kwargs.setdefault("key_dim", D)
    layers = []
    for implementation in implementations:
        layer = CrossModalSelfAttention(
            form=form, implementation=implementation, dtype=dtype, **kwargs
        )
        layer(*inputs)
        if layers:
            layer.set_weights(layers[0].get_weights())
        layers.append(layer)
    return layers


def run(layer, visual, words, mask, cotangent=None):
    """Outputs, attention maps and gradients w.r.t. inputs and weights of sum(G * cotangent)."""
    visual = tf.constant(visual, layer.compute_dtype)
    words = tf.constant(words, layer.compute_dtype)
    with tf.GradientTape() as tape:
        tape.watch([visual, words])
        outputs, attention = layer(visual, words, mask, return_attention=True)
        if cotangent is None:
            cotangent = np.random.default_rng(7).normal(size=outputs.shape)
        loss = tf.reduce_sum(outputs * tf.constant(cotangent, outputs.dtype))
    grads = tape.gradient(loss, [visual, words] + layer.trainable_weights)
    return (
        outputs.numpy(),
        {k: v.numpy() for k, v in attention.items()},
        [g.numpy() for g in grads],
    )


def assert_relative(got, expected, rtol):
    """max |got - expected| <= rtol * max |expected| (relative to the tensor's scale)."""
    scale = max(np.abs(expected).max(), 1e-30)
    assert np.abs(got - expected).max() <= rtol * scale, np.abs(got - expected).max() / scale


# ---------------------------------------------------------------- shapes and arguments


@pytest.mark.parametrize(
    "form,implementation,reduce_dim",
    [
        ("paper", "factorized", None),
        ("paper", "dense", None),
        ("official", "chunked", None),
        ("official", "dense", 7),
    ],
)
def test_output_shapes(inputs, form, implementation, reduce_dim):
    layer = CrossModalSelfAttention(
        form=form, implementation=implementation, key_dim=D, reduce_dim=reduce_dim
    )
    outputs, attention = layer(*inputs, return_attention=True)
    channels = reduce_dim or C
    assert layer.output_channels(CV, CL) == channels
    assert outputs.shape == (B, H, W, channels)
    assert attention["word_attention"].shape == (B, T)
    assert attention["position_attention"].shape == (B, H, W)
    assert layer.compute_output_shape((None, H, W, CV), (None, T, CL), (None, T)) == (
        None,
        H,
        W,
        channels,
    )
    symbolic, symbolic_attention = layer(
        keras.Input((None, None, CV)),
        keras.Input((None, CL)),
        keras.Input((None,)),
        return_attention=True,
    )
    assert symbolic.shape == (None, None, None, channels)
    assert symbolic_attention["word_attention"].shape == (None, None)
    kernel_shapes = {w.path.split("/")[-1]: tuple(w.shape) for w in layer.weights}
    c_f = reduce_dim or C
    assert kernel_shapes["query_kernel"] == (c_f, D)
    assert kernel_shapes["output_kernel"] == (D, c_f)
    assert ("reduce_kernel" in kernel_shapes) == (reduce_dim is not None)


def test_defaults_per_form():
    assert CrossModalSelfAttention().implementation == "factorized"
    assert CrossModalSelfAttention(form="official").implementation == "chunked"
    assert CrossModalSelfAttention().key_dim == 512


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"form": "authors"}, "`form`"),
        ({"implementation": "flash"}, "`implementation`"),
        (
            {"form": "official", "implementation": "factorized"},
            "does not exist for `form='official'`",
        ),
        ({"form": "paper", "implementation": "chunked"}, "does not exist for `form='paper'`"),
        ({"reduce_dim": 16}, "`reduce_dim` is only used"),
        ({"key_dim": 0}, "`key_dim`"),
        ({"key_dim": 2.5}, "`key_dim`"),
        ({"form": "official", "query_chunk_size": -1}, "`query_chunk_size`"),
        ({"epsilon": -1.0}, "`epsilon`"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CrossModalSelfAttention(**kwargs)


def test_mismatched_inputs(inputs):
    visual, words, mask = inputs
    layer = CrossModalSelfAttention(key_dim=D)
    with pytest.raises(ValueError, match="`visual`"):
        layer(visual[..., 0], words, mask)
    with pytest.raises(ValueError, match="number of words"):
        layer(visual, words, mask[:, :2])
    with pytest.raises(ValueError, match="batch size"):
        layer(visual[:1], words, mask)
    layer(visual, words, mask)
    with pytest.raises(ValueError, match="built for 6 visual and 5 word channels"):
        layer(visual[..., :4], words, mask)


# ---------------------------------------------------------------- paper form


@pytest.mark.parametrize("implementation", FACTORIZED)
def test_paper_factorized_equals_dense_float64(inputs, implementation):
    factorized, dense = make_layers("paper", [implementation, "dense"], inputs)
    out_f, att_f, grads_f = run(factorized, *inputs)
    out_d, att_d, grads_d = run(dense, *inputs)
    np.testing.assert_allclose(out_f, out_d, rtol=0, atol=1e-10)
    assert len(grads_f) == 2 + 8
    for index, (g_f, g_d) in enumerate(zip(grads_f, grads_d)):
        if index == KEY_BIAS:
            continue
        assert np.abs(g_d).max() > 1e-3
        np.testing.assert_allclose(g_f, g_d, rtol=0, atol=1e-10)
    # q . bk is the same for every key, so the softmax ignores bk: its gradient is zero.
    np.testing.assert_allclose(grads_f[KEY_BIAS], 0.0, atol=1e-12)
    np.testing.assert_allclose(grads_d[KEY_BIAS], 0.0, atol=1e-12)
    for key in att_d:
        np.testing.assert_allclose(att_f[key], att_d[key], rtol=0, atol=1e-12)


@pytest.mark.parametrize("implementation", FACTORIZED)
def test_paper_factorized_equals_dense_float32(inputs, implementation):
    factorized, dense = make_layers("paper", [implementation, "dense"], inputs, dtype="float32")
    out_f, att_f, grads_f = run(factorized, *inputs)
    out_d, att_d, grads_d = run(dense, *inputs)
    assert out_f.dtype == np.float32
    assert_relative(out_f, out_d, 1e-5)
    for index, (g_f, g_d) in enumerate(zip(grads_f, grads_d)):
        if index != KEY_BIAS:  # analytically zero, see the float64 test
            assert_relative(g_f, g_d, 1e-5)
    assert_relative(att_f["word_attention"], att_d["word_attention"], 1e-5)


def numpy_spatial(height, width):
    s = np.zeros((height, width, 8))
    for h in range(height):
        for w in range(width):
            xmin, xmax = 2 * w / width - 1, 2 * (w + 1) / width - 1
            ymin, ymax = 2 * h / height - 1, 2 * (h + 1) / height - 1
            s[h, w] = [
                xmin,
                ymin,
                xmax,
                ymax,
                (xmin + xmax) / 2,
                (ymin + ymax) / 2,
                1 / width,
                1 / height,
            ]
    return s


def numpy_multimodal(visual, words, height, width):
    """Eq. 1 for one sample's real words: [N, H, W, C]."""
    v_hat = visual / np.linalg.norm(visual, axis=-1, keepdims=True)
    s = numpy_spatial(height, width)
    return np.stack(
        [
            np.concatenate(
                [v_hat, np.broadcast_to(e / np.linalg.norm(e), (height, width, len(e))), s], -1
            )
            for e in words
        ]
    )


def numpy_paper(visual, words, mask, weights):
    """Eq. 1-4 of the paper, one sample at a time, from the definitions."""
    wq, bq, wk, bk, wv, bv, wo, bo = weights
    results = []
    for b in range(len(visual)):
        f = numpy_multimodal(visual[b], words[b][mask[b] != 0], H, W).reshape(-1, C)  # (n, p)
        q, k, v = f @ wq + bq, f @ wk + bk, f @ wv + bv
        scores = q @ k.T
        a = np.exp(scores - scores.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        g = (a @ v) @ wo + bo + f
        results.append(g.reshape(-1, H, W, C).mean(0))
    return np.stack(results)


def test_paper_form_equals_numpy_reference(inputs):
    (layer,) = make_layers("paper", ["factorized"], inputs)
    expected = numpy_paper(*inputs, [w.numpy() for w in layer.weights])
    np.testing.assert_allclose(layer(*inputs).numpy(), expected, rtol=0, atol=1e-12)


def test_no_scaling_by_sqrt_key_dim(inputs):
    # Scaling q and k by s multiplies the logits by s^2: without a 1/sqrt(d) factor,
    # doubling key_dim (with the same logits) must not change the output.
    (layer,) = make_layers("paper", ["factorized"], inputs, key_dim=D)
    (wide,) = make_layers("paper", ["factorized"], inputs, key_dim=2 * D)
    wq, bq, wk, bk, wv, bv, wo, bo = layer.get_weights()
    pad = lambda x: np.concatenate([x, np.zeros_like(x)], axis=-1)  # noqa: E731
    wide.set_weights(
        [
            pad(wq),
            pad(bq),
            pad(wk),
            pad(bk),
            pad(wv),
            pad(bv),
            np.concatenate([wo, np.zeros_like(wo)], 0),
            bo,
        ]
    )
    np.testing.assert_allclose(wide(*inputs), layer(*inputs), atol=1e-12)


# ---------------------------------------------------------------- official form


def numpy_official(visual, words, mask, weights, reduce_dim):
    """The authors' code, one sample at a time with its padding words dropped."""
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    if reduce_dim:
        wr, br, *weights = weights
    wq, bq, wk, bk, wv, bv, wo, bo = weights
    results = []
    for b in range(len(visual)):
        f = numpy_multimodal(visual[b], words[b][mask[b] != 0], H, W)  # [N, H, W, C]
        if reduce_dim:
            f = relu(f @ wr + br)
        q, k, v = relu(f @ wq + bq), relu(f @ wk + bk), relu(f @ wv + bv)

        def pool(x):  # 2x2x2 max, stride 2, 'same' (the end of odd axes is dropped padding)
            n, h, w, d = x.shape
            out = np.zeros(((n + 1) // 2, (h + 1) // 2, (w + 1) // 2, d))
            for i in range(out.shape[0]):
                for j in range(out.shape[1]):
                    for c in range(out.shape[2]):
                        block = x[2 * i : 2 * i + 2, 2 * j : 2 * j + 2, 2 * c : 2 * c + 2]
                        out[i, j, c] = block.reshape(-1, d).max(0)
            return out.reshape(-1, d)

        k, v = pool(k), pool(v)
        q = q.reshape(-1, q.shape[-1])
        scores = q @ k.T
        a = np.exp(scores - scores.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        g = relu((a @ v) @ wo + bo) + f.reshape(q.shape[0], -1)
        results.append(g.reshape(f.shape).mean(0))
    return np.stack(results)


@pytest.mark.parametrize("reduce_dim", [None, 7])
def test_official_form_equals_numpy_reference(reduce_dim):
    rng = np.random.default_rng(3)
    # Odd H and odd word counts exercise the 'same' padding of the pooling.
    visual = rng.normal(size=(B, H, W, CV))
    words = rng.normal(size=(B, T, CL))
    mask = np.array([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]])
    for layer in make_layers(
        "official",
        ["chunked", "dense"],
        (visual, words, mask),
        reduce_dim=reduce_dim,
        query_chunk_size=5,
        attention_memory_bytes=1,  # the chunked path
    ):
        expected = numpy_official(
            visual, words, mask, [w.numpy() for w in layer.weights], reduce_dim
        )
        np.testing.assert_allclose(layer(visual, words, mask).numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "chunk,memory,reduce_dim", [(5, 1, 9), (100, 1, 9), (5, 1, None), (5, 1 << 30, 9)]
)
def test_official_chunked_equals_dense(inputs, chunk, memory, reduce_dim):
    # memory=1: the attention is recomputed chunk by chunk; 1 GiB: kept whole.
    chunked, dense = make_layers(
        "official",
        IMPLEMENTATIONS["official"],
        inputs,
        reduce_dim=reduce_dim,
        query_chunk_size=chunk,
        attention_memory_bytes=memory,
    )
    out_c, att_c, grads_c = run(chunked, *inputs)
    out_d, att_d, grads_d = run(dense, *inputs)
    np.testing.assert_allclose(out_c, out_d, rtol=0, atol=1e-12)
    assert len(grads_c) == 2 + (10 if reduce_dim else 8)
    for g_c, g_d in zip(grads_c, grads_d):
        assert np.abs(g_d).max() > 0
        np.testing.assert_allclose(g_c, g_d, rtol=0, atol=1e-10)
    for key in att_d:
        np.testing.assert_allclose(att_c[key], att_d[key], rtol=0, atol=1e-12)


def test_official_chunked_equals_dense_float32(inputs):
    chunked, dense = make_layers(
        "official", IMPLEMENTATIONS["official"], inputs, dtype="float32", query_chunk_size=5
    )
    out_c, _, grads_c = run(chunked, *inputs)
    out_d, _, grads_d = run(dense, *inputs)
    assert_relative(out_c, out_d, 1e-5)
    for g_c, g_d in zip(grads_c, grads_d):
        assert_relative(g_c, g_d, 1e-5)


# ---------------------------------------------------------------- padding and batching


@pytest.mark.parametrize(
    "form,implementation",
    [(f, i) for f, impls in IMPLEMENTATIONS.items() for i in impls],
)
def test_batch_with_padding_equals_each_sample_alone(form, implementation):
    rng = np.random.default_rng(5)
    visual = rng.normal(size=(B, H, W, CV))
    words = rng.normal(size=(B, T, CL))
    mask = np.array([[1, 0, 1, 1, 0], [1, 1, 0, 0, 0]])  # padding in the middle too
    (layer,) = make_layers(form, [implementation], (visual, words, mask), query_chunk_size=7)
    outputs, attention = layer(visual, words, mask, return_attention=True)
    for b in range(B):
        real = mask[b] != 0
        alone, alone_attention = layer(
            visual[b : b + 1],
            words[b : b + 1, real],
            np.ones((1, real.sum())),
            return_attention=True,
        )
        np.testing.assert_allclose(outputs[b], alone[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            attention["word_attention"][b].numpy()[real],
            alone_attention["word_attention"][0],
            rtol=0,
            atol=1e-12,
        )
        np.testing.assert_allclose(
            attention["position_attention"][b],
            alone_attention["position_attention"][0],
            rtol=0,
            atol=1e-12,
        )


@pytest.mark.parametrize("form", ["paper", "official"])
def test_extra_padding_words_change_nothing(inputs, form):
    visual, words, mask = inputs
    (layer,) = make_layers(form, [IMPLEMENTATIONS[form][0]], inputs)
    garbage = np.random.default_rng(9).normal(size=(B, 3, CL)) * 10
    longer_words = np.concatenate([words, garbage], axis=1)
    longer_mask = np.concatenate([mask, np.zeros((B, 3), mask.dtype)], axis=1)
    out, att = layer(visual, words, mask, return_attention=True)
    out_long, att_long = layer(visual, longer_words, longer_mask, return_attention=True)
    np.testing.assert_allclose(out_long, out, rtol=0, atol=1e-12)
    np.testing.assert_allclose(att_long["word_attention"][:, :T], att["word_attention"], atol=1e-12)
    np.testing.assert_array_equal(att_long["word_attention"][:, T:], 0.0)


@pytest.mark.parametrize("form", ["paper", "official"])
def test_sample_does_not_depend_on_the_rest_of_the_batch(inputs, form):
    visual, words, mask = inputs
    (layer,) = make_layers(form, [IMPLEMENTATIONS[form][0]], inputs)
    other = np.random.default_rng(11)
    visual2, words2 = visual.copy(), words.copy()
    visual2[1] = other.normal(size=visual2[1].shape)
    words2[1] = other.normal(size=words2[1].shape)
    mask2 = mask.copy()
    mask2[1] = [1, 0, 0, 0, 0]
    np.testing.assert_allclose(
        layer(visual2, words2, mask2)[0], layer(visual, words, mask)[0], rtol=0, atol=1e-13
    )


@pytest.mark.parametrize("form", ["paper", "official"])
def test_word_attention_is_a_distribution_over_real_words(inputs, form):
    layers = make_layers(form, IMPLEMENTATIONS[form], inputs)
    results = [run(layer, *inputs)[1] for layer in layers]
    for attention in results:
        word = attention["word_attention"]
        np.testing.assert_allclose(word.sum(-1), 1.0, atol=1e-12)
        np.testing.assert_array_equal(word[MASK == 0], 0.0)
        assert np.all(word[MASK == 1] > 0)
        np.testing.assert_allclose(attention["position_attention"].sum((1, 2)), 1.0, atol=1e-12)
    np.testing.assert_allclose(
        results[0]["word_attention"], results[1]["word_attention"], atol=1e-12
    )


@pytest.mark.parametrize("form", ["paper", "official"])
def test_sentence_without_words_gives_zeros_not_nan(inputs, form):
    visual, words, _ = inputs
    mask = np.array([[0, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    for layer in make_layers(form, IMPLEMENTATIONS[form], (visual, words, mask)):
        outputs, attention, grads = run(layer, visual, words, mask)
        np.testing.assert_array_equal(outputs[0], 0.0)
        np.testing.assert_array_equal(attention["word_attention"][0], 0.0)
        assert all(np.all(np.isfinite(g)) for g in grads)


# ---------------------------------------------------------------- graphs, XLA, precision


@pytest.mark.parametrize(
    "form, implementation",
    [("paper", "factorized"), ("paper", "factorized_per_word"), ("official", "chunked")],
)
def test_dynamic_shapes_in_a_graph_with_gradients(inputs, form, implementation):
    visual, words, mask = inputs
    fast, reference = make_layers(
        form,
        [implementation, IMPLEMENTATIONS[form][1]],
        inputs,
        query_chunk_size=5,
        attention_memory_bytes=1,
    )

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None, CV], tf.float64),
            tf.TensorSpec([None, None, CL], tf.float64),
            tf.TensorSpec([None, None], tf.int32),
        ]
    )
    def forward_backward(visual, words, mask):
        with tf.GradientTape() as tape:
            tape.watch(visual)
            outputs = fast(visual, words, mask)
            loss = tf.reduce_sum(outputs**2)
        return outputs, tape.gradient(loss, [visual] + fast.trainable_weights)

    outputs, grads = forward_backward(visual, words, mask.astype(np.int32))
    visual_t = tf.constant(visual)
    with tf.GradientTape() as tape:
        tape.watch(visual_t)
        expected = reference(visual_t, words, mask)
        loss = tf.reduce_sum(expected**2)
    expected_grads = tape.gradient(loss, [visual_t] + reference.trainable_weights)
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-12)
    for got, want in zip(grads, expected_grads):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_xla_compiles_the_memory_bounded_kernels(inputs):
    visual, words, mask = inputs
    for form in ("paper", "official"):
        fast, reference = make_layers(
            form,
            IMPLEMENTATIONS[form],
            inputs,
            dtype="float32",
            query_chunk_size=5,
            attention_memory_bytes=1,
        )

        @tf.function(jit_compile=True)
        def forward_backward(visual, words, mask, layer=fast):
            with tf.GradientTape() as tape:
                tape.watch(visual)
                loss = tf.reduce_sum(layer(visual, words, mask) ** 2)
            return loss, tape.gradient(loss, visual)

        visual32, words32 = visual.astype(np.float32), words.astype(np.float32)
        args = (tf.constant(visual32), tf.constant(words32), tf.constant(mask))
        loss, grad = forward_backward(*args)
        expected_loss, expected_grad = forward_backward.python_function(*args, layer=reference)
        assert_relative(loss.numpy(), expected_loss.numpy(), 1e-5)
        assert_relative(grad.numpy(), expected_grad.numpy(), 1e-5)


def test_mixed_precision_policy(inputs):
    layer = CrossModalSelfAttention(form="official", key_dim=D, dtype="mixed_bfloat16")
    outputs, attention = layer(*inputs, return_attention=True)
    assert outputs.dtype == tf.bfloat16 and layer.query_kernel.dtype == "float32"
    assert np.all(np.isfinite(outputs.numpy().astype(np.float32)))
    np.testing.assert_allclose(
        attention["word_attention"].numpy().astype(np.float32).sum(-1), 1.0, atol=2e-2
    )


# ---------------------------------------------------------------- serialization


@pytest.mark.parametrize("form", ["paper", "official"])
def test_config_round_trip(inputs, form):
    extra = {"reduce_dim": 9, "query_chunk_size": 3} if form == "official" else {}
    layer = CrossModalSelfAttention(
        form=form, key_dim=D, epsilon=1e-10, kernel_regularizer="l2", name="cmsa", **extra
    )
    expected = layer(*inputs)
    config = layer.get_config()
    for key in ("form", "implementation", "key_dim", "reduce_dim", "query_chunk_size", "epsilon"):
        assert key in config
    clone = CrossModalSelfAttention.from_config(config)
    assert (clone.form, clone.implementation, clone.key_dim, clone.reduce_dim) == (
        layer.form,
        layer.implementation,
        layer.key_dim,
        layer.reduce_dim,
    )
    clone(*inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(*inputs), expected)
    # The l2 regularizer on the four projection kernels (and the reduction's).
    assert len(clone.losses) == (5 if form == "official" else 4)


@pytest.mark.parametrize("form", ["paper", "official"])
def test_saved_model_file_reproduces_outputs(inputs, form, tmp_path):
    visual, words, mask = inputs
    visual_in = keras.Input((H, W, CV), name="visual")
    words_in = keras.Input((T, CL), name="words")
    mask_in = keras.Input((T,), dtype="int32", name="word_mask")
    extra = {"reduce_dim": 9} if form == "official" else {}
    features, attention = CrossModalSelfAttention(form=form, key_dim=D, **extra)(
        visual_in, words_in, mask_in, return_attention=True
    )
    model = keras.Model([visual_in, words_in, mask_in], [features, attention["word_attention"]])
    batch = [visual.astype(np.float32), words.astype(np.float32), mask.astype(np.int32)]
    expected = model.predict(batch, verbose=0)
    path = tmp_path / "cmsa.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    got = restored.predict(batch, verbose=0)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def test_projection_kernels_are_initialised_independently(inputs):
    layer = CrossModalSelfAttention(form="official", key_dim=D, reduce_dim=D)
    layer(*inputs)
    kernels = [layer.query_kernel, layer.key_kernel, layer.value_kernel]
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.abs(kernels[a].numpy() - kernels[b].numpy()).max() > 1e-3


@pytest.mark.parametrize(
    "kwargs,weights",
    [
        (dict(form="paper"), 8),
        (dict(form="paper", implementation="dense"), 8),
        (dict(form="official", query_chunk_size=5), 8),
        (dict(form="official", implementation="dense", reduce_dim=7), 10),
    ],
)
def test_passes_the_layer_checks(inputs, kwargs, weights):
    channels = kwargs.get("reduce_dim") or C
    run_layer_test(
        CrossModalSelfAttention,
        dict(kwargs, key_dim=D),
        inputs,
        call_kwargs={"return_attention": True},
        expected_output_shape=(
            (B, H, W, channels),
            {"word_attention": (B, T), "position_attention": (B, H, W)},
        ),
        expected_num_trainable_weights=weights,
    )
