"""benchmarks/flops.py: exact FLOPs of tiny graphs, counted by hand, control flow included."""

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import load_benchmark

REPO = pathlib.Path(__file__).resolve().parents[2]


def _module():
    return load_benchmark("flops")


flops = _module()


def ones(*shape):
    return tf.ones(shape)


def test_matmul_is_2mnk_and_the_profiler_agrees():
    m, k, n = 4, 3, 5

    def f(a, b, c):
        return tf.matmul(a, b) + tf.matmul(c, b, transpose_a=True)  # c: [K, M]

    args = [ones(m, k), ones(k, n), ones(k, m)]
    count = flops.count_call(f, args)
    assert dict(count.by_type) == {"MatMul": 2 * (2 * m * n * k), "AddV2": m * n}
    assert count.total == 4 * m * n * k + m * n and count.matrix == 4 * m * n * k
    assert count.notes == []
    # Where TF registers a count, ours is TF's: the profiler gives the same total.
    graph = tf.function(f).get_concrete_function(*args).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    assert tf.compat.v1.profiler.profile(graph, options=options).total_float_ops == count.total


def test_batch_matmul_with_adjoints_and_broadcasting():
    def f(a, b):  # a: [2, 1, K, M] adjoint -> [M, K]; b: [3, K, N] broadcast to [2, 3, K, N]
        return tf.matmul(a, b, adjoint_a=True)

    count = flops.count_call(f, [ones(2, 1, 7, 4), ones(3, 7, 5)])
    assert dict(count.by_type) == {"BatchMatMulV2": 2 * (2 * 3) * 4 * 5 * 7}


@pytest.mark.parametrize(
    "equation,shapes,expected",
    [
        ("bhwc,ck->bhwk", [(2, 3, 4, 5), (5, 6)], 2 * 2 * 3 * 4 * 5 * 6),
        ("btc,bt->bc", [(2, 7, 5), (2, 7)], 2 * 2 * 7 * 5),
        ("bij,bj->bi", [(2, 3, 4), (1, 4)], 2 * 2 * 3 * 4),  # broadcast batch
        ("...ij,jk->...ik", [(2, 3, 4, 5), (5, 6)], 2 * 2 * 3 * 4 * 5 * 6),
        ("ij,ij->ij", [(3, 4), (3, 4)], 3 * 4),  # no sum: one multiply per element
        ("ij->i", [(3, 4)], 3 * 4),  # a sum
        ("ij->ji", [(3, 4)], 0),  # a transpose
        ("ij,jk", [(3, 4), (4, 5)], 2 * 3 * 4 * 5),  # implicit output "ik"
    ],
)
def test_einsum_flops(equation, shapes, expected):
    assert flops.einsum_flops(equation, [list(s) for s in shapes]) == expected


def test_einsum_op_and_its_gradient():
    b, i, j, k = 2, 3, 4, 5

    def f(x, w):
        with tf.GradientTape() as tape:
            tape.watch(w)
            y = tf.einsum("bij,jk->bik", x, w)
        # dw = einsum("bij,bik->jk", x, dy): the same contraction once more.
        return y, tape.gradient(y, w)

    count = flops.count_call(f, [ones(b, i, j), ones(j, k)])
    assert count.by_type["Einsum"] == 2 * (2 * b * i * j * k)


def test_conv_backprops_cost_what_the_forward_costs():
    # 'VALID' with stride 2: TF's registry would divide the input size by the stride.
    batch, size, cin, cout, kernel = 2, 9, 3, 4, 3
    out = (size - kernel) // 2 + 1

    def f(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = tf.nn.conv2d(x, w, strides=2, padding="VALID")
        return tape.gradient(y, [x, w])

    count = flops.count_call(f, [ones(batch, size, size, cin), ones(kernel, kernel, cin, cout)])
    conv = 2 * batch * out * out * kernel * kernel * cin * cout
    assert count.by_type["Conv2D"] == 0  # dead: the gradients do not need the output
    assert count.by_type["Conv2DBackpropInput"] == conv
    assert count.by_type["Conv2DBackpropFilter"] == conv


def test_dense_training_step():
    m, k, n = 6, 5, 4
    layer = keras.layers.Dense(n)
    layer.build((m, k))
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(layer.trainable_variables)

    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x))
        grads = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply(grads, layer.trainable_variables)
        return loss

    count = flops.count_call(step, [ones(m, k)])
    # Forward x W, and the kernel's gradient x^T dy (the input's is not needed).
    assert count.by_type["MatMul"] == 2 * (2 * m * n * k)
    # TF's registry: one add per element, and (m - 1) adds per bias for its gradient.
    assert count.by_type["BiasAdd"] == m * n and count.by_type["BiasAddGrad"] == (m - 1) * n
    assert count.notes == []


def test_custom_gradient_backward_is_counted():
    @tf.custom_gradient
    def project(x, w):
        def grad(dy):  # dx = dy w^T, dw = x^T dy
            return tf.matmul(dy, w, transpose_b=True), tf.matmul(x, dy, transpose_a=True)

        return tf.matmul(x, w), grad

    def f(x, w):
        with tf.GradientTape() as tape:
            tape.watch(w)
            loss = tf.reduce_sum(project(x, w))
        return loss, tape.gradient(loss, w)

    m, k, n = 3, 4, 5
    count = flops.count_call(f, [ones(m, k), ones(k, n)])
    # The forward and `grad`'s dw; its dx reaches nothing (only w is watched) and is pruned.
    assert count.by_type["MatMul"] == 2 * (2 * m * n * k)


def test_loops_count_every_iteration():
    rows, k, n = 6, 3, 4

    def mapped(x):  # tf.map_fn: `rows` iterations of a [1, K] x [K, N] matmul
        return tf.map_fn(lambda r: tf.matmul(r[None], tf.ones([k, n]))[0], x)

    count = flops.count_call(mapped, [ones(rows, k)])
    assert count.by_type["MatMul"] == rows * 2 * k * n and count.notes == []

    def looped(x, trips):  # a data-dependent number of iterations, read at run time
        _, y = tf.while_loop(
            lambda i, y: i < trips, lambda i, y: (i + 1, tf.matmul(y, tf.ones([k, k]))), (0, x)
        )
        return y

    count = flops.count_call(looped, [ones(2, k), tf.constant(5)])
    assert count.by_type["MatMul"] == 5 * 2 * 2 * k * k and count.notes == []

    def nested(x):  # a loop inside a loop body: its constant maximum_iterations
        return tf.map_fn(lambda r: tf.map_fn(lambda e: e * 2.0, r), x)

    count = flops.count_call(nested, [ones(rows, k)])
    assert count.by_type["Mul"] == rows * k and count.notes == []


def test_unknown_trip_count_inside_a_body_is_noted():
    def f(x, trips):
        def row(r):
            _, r = tf.while_loop(lambda i, r: i < trips, lambda i, r: (i + 1, r * 2.0), (0, r))
            return r

        return tf.map_fn(row, x)

    count = flops.count_call(f, [ones(4, 3), tf.constant(7)])
    assert count.by_type["Mul"] == 4 * 3  # each inner loop counted once
    assert len(count.notes) == 1 and "number of iterations unknown" in count.notes[0]


def test_cond_counts_the_branch_taken():
    def f(x, p):
        return tf.cond(
            p > 0, lambda: tf.matmul(x, tf.ones([3, 100])), lambda: tf.matmul(x, tf.ones([3, 2]))
        )

    taken = [flops.count_call(f, [ones(2, 3), tf.constant(p)]).total for p in (1, -1)]
    assert taken == [2 * 2 * 100 * 3 + 1, 2 * 2 * 2 * 3 + 1]  # + the comparison


def test_data_dependent_shapes_are_read_at_run_time():
    k, n = 3, 8

    def sliced(x, mask):  # the rows kept depend on the mask's values
        kept = tf.cast(tf.reduce_sum(mask), tf.int32)
        return tf.matmul(x[:kept], tf.ones([k, n]))

    for constant in ((), (1,)):  # fed (read at run time) or a constant (static)
        count = flops.count_call(sliced, [ones(10, k), tf.constant([1.0, 1, 1, 0])], constant)
        assert count.by_type["MatMul"] == 2 * 3 * n * k and count.notes == []

    def stacked(x, length):  # a TensorArray of data-dependent length, then a matmul
        array = tf.TensorArray(tf.float32, size=length, element_shape=[k])
        _, array = tf.while_loop(
            lambda i, a: i < length, lambda i, a: (i + 1, a.write(i, x[0])), (0, array)
        )
        return tf.matmul(array.stack(), tf.ones([k, n]))

    count = flops.count_call(stacked, [ones(2, k), tf.constant(4)])
    assert count.by_type["MatMul"] == 2 * 4 * n * k and count.notes == []


def test_dead_code_is_not_counted():
    def f(x):
        tf.matmul(x, tf.ones([3, 50]))  # unused
        return x + 1.0

    assert dict(flops.count_call(f, [ones(2, 3)]).by_type) == {"AddV2": 6}


def test_backbone_convolutions_match_the_layers():
    """AtrousResNet-18 at 64 x 64 (features 8 x 8, a multiple of every dilation, so the space to
    batch of the dilated convolutions adds no padding): the forward's Conv2D FLOPs are the sum
    over its Conv2D layers of 2 * output elements * kernel area * input channels."""
    from cmsa_tf.models.atrous_resnet import AtrousResNet

    backbone = AtrousResNet(depth=18, output_stride=8, width=4, weights=None)
    image = tf.ones([2, 64, 64, 3])
    backbone(image)
    by_layer = {}
    call = keras.layers.Conv2D.call

    def recording(self, inputs):
        outputs = call(self, inputs)
        by_layer[self.name] = 2 * np.prod(outputs.shape) * np.prod(self.kernel.shape[:3])
        return outputs

    keras.layers.Conv2D.call = recording
    try:
        backbone(image)
    finally:
        keras.layers.Conv2D.call = call
    assert len(by_layer) == 20
    count = flops.count_call(lambda x: backbone(x, training=False)["res5"], [image])
    assert count.by_type["Conv2D"] == sum(by_layer.values())
    assert count.notes == []


def _tiny_step_flops(form, real_words, attention_memory_bytes, implementation=None):
    """FLOPs of forward + backward of the tiny CMSA model (tests/helpers.py) at 32 x 32: every
    level at 4 x 4 positions, d = 4, T = 6 slots of which `real_words` real, batch 2."""
    from cmsa_tf.models.factory import build_model
    from tests.helpers import tiny_shapes_config

    config = tiny_shapes_config("unused", form)
    config.model.backbone.output_stride = 8  # every level at res3's 4 x 4 (shapes.py: 16)
    config.model.attention.attention_memory_bytes = attention_memory_bytes
    config.model.attention.query_chunk_size = 4  # 4 chunks of 4 positions, no padding
    if implementation is not None:
        config.model.attention.implementation = implementation
    model = build_model(config.model, vocab_size=20, image_size=32, max_words=6)
    variables = model.trainable_variables

    def step(image, words):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model({"image": image, "words": words}, training=True))
        return loss, tape.gradient(loss, variables)

    words = np.zeros((2, 6), "int32")
    words[:, :real_words] = 3
    count = flops.count_call(step, [tf.ones([2, 32, 32, 3]), tf.constant(words)], constant=(1,))
    assert count.notes == []
    return count


def test_official_kernel_recomputation_costs_one_scores_matmul_more():
    """Above its memory budget the official kernel recomputes the scores q k^T of each chunk in
    the backward pass: per level 2 * B * (P * L) * K * d more, with K = 2 * 2 * 1 pooled slots
    (4 x 4 positions and L = 2 words, pooled 2 x 2 x 2). Its output stage recomputes the
    pre-activations r Wo (2 * B * P * L * d * C more einsum FLOPs, C the level's output
    channels) and, computing the mean over words as a product and a sum, drops the kept path's
    mean einsum (2 * B * P * L * C forward) and its gradient (B * P * L * C)."""
    kept, chunked = (_tiny_step_flops("official", 2, memory) for memory in (1 << 30, 1))
    batch, positions, words, slots, key_dim, levels = 2, 16, 2, 4, 4, 3
    extra = levels * 2 * batch * positions * words * slots * key_dim
    assert chunked.by_type["BatchMatMulV2"] - kept.by_type["BatchMatMulV2"] == extra
    channels = 24 + 8 + 8  # res5: 8 visual + 8 word + 8 spatial; res4, res3: reduced to 8
    rows = batch * positions * words
    extra_einsum = 2 * rows * key_dim * channels - (2 + 1) * rows * channels
    assert chunked.by_type["Einsum"] - kept.by_type["Einsum"] == extra_einsum


def test_paper_kernel_word_loop_counts_each_word():
    """`implementation="factorized_per_word"` over its memory budget (and always without a GPU):
    the paper kernel's softmax over key positions runs one word at a time, in a while loop
    forward and one backward: 2 * L softmaxes of [B, P, P] per level, plus the word softmax tau
    of [B, P, L, L] (TF counts 5 FLOPs per softmax element). The default product path has no
    position softmax (exponentials and two matmuls instead): tau's alone, and the branch its
    `tf.cond` takes is the one counted."""
    real_words = 3
    count = _tiny_step_flops("paper", real_words, 1, implementation="factorized_per_word")
    batch, positions, levels = 2, 16, 3
    tau = batch * positions * real_words**2
    per_level = 2 * real_words * batch * positions * positions + tau
    assert count.by_type["Softmax"] == 5 * levels * per_level
    product = _tiny_step_flops("paper", real_words, 1)
    assert product.by_type["Softmax"] == 5 * levels * tau
