"""Test-only: the authors' CMSA head (`CMSA_model.py`) rebuilt in `tf.compat.v1` graph mode.

Written from reading their code: variables under their scopes with their names (tf.layers'
default names written out: `conv3d`, `conv3d_1`, ...), batch 1, padding words dropped by a
boolean mask, the visual map / l2-normalised word / spatial concat per word, `cmsa_layer` with
ReLU projections and 2x2x2 'same' max pooling of keys and values, `MGATE`, the `score` conv and
TF1 `resize_bilinear`. Dimensions are parameters (theirs: 40x40, 2048 -> 1000, 512 / 128 / 64,
reductions 256 / 128, 500), so tests run it small. `write_checkpoint` saves it, with random
values, plus a DeepLab backbone and what a training snapshot also holds (VOC classifier, Adam
slots, power accumulators, the float global step).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from cmsa_tf.models.weights.tf1_deeplab import tf1_variable_names

v1 = tf.compat.v1


@dataclasses.dataclass
class HeadDims:
    vocab_size: int
    embedding_dim: int = 16
    res5_channels: int = 64
    res4_channels: int = 32
    res3_channels: int = 16
    res5_projection: int = 12
    key_dims: tuple = (8, 6, 4)
    reduce_dims: tuple = (10, 8)
    fusion_channels: int = 6


def _initializer(rng, scale=0.3):
    def init(shape, dtype=None, partition_info=None):
        return tf.constant(rng.normal(scale=scale, size=shape).astype("float32"))

    return init


def _conv2d(name, x, size, out, rng, relu=False, kernel="kernel", bias="bias"):
    with v1.variable_scope(name):
        w = v1.get_variable(kernel, [size, size, x.shape[-1], out], initializer=_initializer(rng))
        b = v1.get_variable(bias, [out], initializer=_initializer(rng, 0.1))
    y = tf.nn.conv2d(x, w, [1, 1, 1, 1], padding="SAME") + b
    return tf.nn.relu(y) if relu else y


def _conv3d(name, x, out, rng):  # a 1x1x1 tf.layers.conv3d with ReLU
    with v1.variable_scope(name):
        w = v1.get_variable("kernel", [1, 1, 1, x.shape[-1], out], initializer=_initializer(rng))
        b = v1.get_variable("bias", [out], initializer=_initializer(rng, 0.1))
    return tf.nn.relu(tf.nn.conv3d(x, w, [1, 1, 1, 1, 1], padding="SAME") + b)


def _cmsa_layer(in_feats, name, dim, out_dim, height, width, rng):
    with v1.variable_scope(name):
        theta = tf.reshape(_conv3d("conv3d", in_feats, dim, rng), [1, -1, dim])
        phi = _conv3d("conv3d_1", in_feats, dim, rng)
        phi = tf.nn.max_pool3d(phi, [1, 2, 2, 2, 1], [1, 2, 2, 2, 1], padding="SAME")
        phi = tf.transpose(tf.reshape(phi, [1, -1, dim]), [0, 2, 1])
        attention = tf.nn.softmax(tf.matmul(theta, phi), -1)
        feats = _conv3d("conv3d_2", in_feats, dim, rng)
        feats = tf.nn.max_pool3d(feats, [1, 2, 2, 2, 1], [1, 2, 2, 2, 1], padding="SAME")
        feats = tf.matmul(attention, tf.reshape(feats, [1, -1, dim]))
        feats = tf.reshape(feats, [1, -1, height, width, dim])
        feats = _conv3d("conv3d_3", feats, out_dim, rng) + in_feats
        return tf.reduce_mean(feats, axis=1)


def _gate_cell(name, x1, x2, x3, channels, gamma, rng):
    with v1.variable_scope(name):
        y = _conv2d("conv2d", x1, 3, 3 * channels, rng)
        i, f, r = tf.split(y, 3, axis=3)
        f = tf.sigmoid(f + 1.0)
        r = tf.sigmoid(r + 1.0)
        a = tf.Variable(gamma, trainable=True)  # `<scope>/Variable`, as theirs
        c = a * f * x2 + (1 - a) * f * x3 + (1 - f) * i
        return r * tf.tanh(c) + (1 - r) * x1


def _spatial(height, width):
    out = np.zeros((1, height, width, 8), np.float32)
    for h in range(height):
        for w in range(width):
            xmin, xmax = w / width * 2 - 1, (w + 1) / width * 2 - 1
            ymin, ymax = h / height * 2 - 1, (h + 1) / height * 2 - 1
            xctr, yctr = (xmin + xmax) / 2, (ymin + ymax) / 2
            out[:, h, w] = [xmin, ymin, xmax, ymax, xctr, yctr, 1 / width, 1 / height]
    return out


def build_head(dims, res5, res4, res3, words, image_size, seed=0):
    """Their `build_graph` on given backbone features; returns (pred, up) tensors."""
    rng = np.random.default_rng(seed)
    height, width = res5.shape[1], res5.shape[2]
    with v1.variable_scope("text_objseg"):
        c5 = _conv2d("mlp_c5", res5, 1, dims.res5_projection, rng, kernel="DW", bias="biases")
        embedding = v1.get_variable(
            "embedding", [dims.vocab_size, dims.embedding_dim], initializer=_initializer(rng)
        )
        real = tf.not_equal(words[0], 0)
        lang = tf.boolean_mask(tf.gather(embedding, words[0]), real)  # [n, Cl]
        lang = tf.nn.l2_normalize(lang, 1)
        n = tf.shape(lang)[0]
        lang = tf.tile(lang[:, None, None, :], [1, height, width, 1])  # [n, h, w, Cl]
        spatial = tf.tile(tf.constant(_spatial(height, width)), [n, 1, 1, 1])

        def multimodal(visual):
            visual = tf.tile(tf.nn.l2_normalize(visual, 3), [n, 1, 1, 1])
            return tf.concat([visual, lang, spatial], 3)[None]  # [1, n, h, w, C]

        f5, f4, f3 = multimodal(c5), multimodal(res4), multimodal(res3)
        k5, k4, k3 = dims.key_dims
        r4, r3 = dims.reduce_dims
        out5 = _cmsa_layer(f5, "CMSA", k5, f5.shape[-1], height, width, rng)
        out5 = _conv2d("conv2d", out5, 1, dims.fusion_channels, rng, relu=True)
        f4 = _conv3d("conv3d", f4, r4, rng)
        out4 = _cmsa_layer(f4, "CMSA_C4", k4, r4, height, width, rng)
        out4 = _conv2d("conv2d_1", out4, 1, dims.fusion_channels, rng, relu=True)
        f3 = _conv3d("conv3d_1", f3, r3, rng)
        out3 = _cmsa_layer(f3, "CMSA_C3", k3, r3, height, width, rng)
        out3 = _conv2d("conv2d_2", out3, 1, dims.fusion_channels, rng, relu=True)
        with v1.variable_scope("mgate"):
            channels = dims.fusion_channels
            fused = (
                _gate_cell("x1", out5, out4, out3, channels, 0.3, rng)
                + _gate_cell("x2", out4, out5, out3, channels, 0.6, rng)
                + _gate_cell("x3", out3, out5, out4, channels, 0.45, rng)
            )
        pred = _conv2d("score", fused, 3, 1, rng, kernel="DW", bias="biases")
        up = v1.image.resize_bilinear(pred, [image_size, image_size])
    return pred, up


def backbone_tensors(backbone, seed=1):
    """Random values for every backbone variable, keyed by DrSleep's TF1 names."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, (variable, _) in tf1_variable_names(backbone).items():
        value = rng.normal(scale=0.2, size=variable.shape).astype("float32")
        if name.endswith("moving_variance"):
            value = np.abs(value) + 0.5
        tensors[name] = value
    return tensors


def write_checkpoint(
    path, dims, backbone, image_size, max_words, drop=(), reshape=(), extra=True, seed=0
):
    """Writes a TF1 checkpoint of the authors' names; returns (prefix, {name: value}).

    `drop` names variables to leave out, `reshape` variables to save with one more row.
    """
    graph = tf.Graph()
    stride = 8
    size = image_size // stride
    with graph.as_default():
        features = [
            v1.placeholder(tf.float32, [1, size, size, c])
            for c in (dims.res5_channels, dims.res4_channels, dims.res3_channels)
        ]
        words = v1.placeholder(tf.int32, [1, max_words])
        build_head(dims, *features, words, image_size, seed=seed)
        for name, value in backbone_tensors(backbone).items():
            v1.Variable(value, name=name)
        if extra:
            v1.Variable(np.zeros([1, 1, 8, 21], np.float32), name="fc1_voc12_c0/weights")
            v1.Variable(np.zeros([21], np.float32), name="fc1_voc12_c0/biases")
            v1.Variable(np.zeros([1000], np.float32), name="text_objseg/mlp_c5/biases/Adam")
            v1.Variable(np.zeros([1000], np.float32), name="text_objseg/mlp_c5/biases/Adam_1")
            v1.Variable(0.9, name="text_objseg/beta1_power")
            v1.Variable(0.999, name="text_objseg/beta2_power")
            v1.Variable(800000.0, name="text_objseg/Variable")
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            values = {
                v.op.name: session.run(v) for v in v1.global_variables() if v.op.name not in drop
            }
    for name in reshape:
        value = values[name]
        values[name] = np.concatenate([value, value[:1]], axis=0)
    saved = tf.Graph()
    with saved.as_default():
        variables = {name: v1.Variable(value, name=name) for name, value in values.items()}
        saver = v1.train.Saver(var_list=variables)
        with v1.Session(graph=saved) as session:
            session.run(v1.global_variables_initializer())
            prefix = saver.save(session, str(path), write_meta_graph=False)
    return prefix, values


def run_head(values, dims, res5, res4, res3, words, image_size):
    """Runs `build_head` with the checkpoint's values; returns (pred, up) as numpy."""
    graph = tf.Graph()
    with graph.as_default():
        inputs = [tf.constant(x, tf.float32) for x in (res5, res4, res3)]
        pred, up = build_head(dims, *inputs, tf.constant(words, tf.int32), image_size)
        assigns = [
            v.assign(values[v.op.name])
            for v in v1.global_variables()
            if v.op.name.startswith("text_objseg/")
        ]
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            session.run(assigns)
            return session.run([pred, up])
