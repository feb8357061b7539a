"""DeepLab-v2 style atrous ResNet backbone (Caffe ResNet v1 with Caffe layer names).

The backbone of the paper (Sec. 3.3, 4.1) is DeepLab-v2's ResNet-101: the usual ResNet v1 with the
strides of res4 and res5 replaced by dilation, so res3, res4 and res5 all come out at 1/8 of the
input. This module builds that network for depths 18/34/50/101/152, output strides 8/16/32 and any
base width, names every layer as Caffe and DrSleep's tensorflow-deeplab-resnet do (so TF1
checkpoints map mechanically, see `weights/tf1_deeplab.py`), and copies ImageNet weights from
`keras.applications` (`weights/keras_applications.py`).
"""

import os

import keras
from absl import logging

from cmsa_tf.models.resnet_blocks import (
    DEPTHS,
    FEATURE_NAMES,
    ResNetGraphBuilder,
)
from cmsa_tf.models.weights.keras_applications import copy_keras_applications_weights
from cmsa_tf.models.weights.tf1_deeplab import load_tf1_checkpoint

# output stride -> (stride, dilation) of res2, res3, res4, res5.
_STAGE_GEOMETRY = {
    8: ((1, 1), (2, 1), (1, 2), (1, 4)),
    16: ((1, 1), (2, 1), (2, 1), (1, 2)),
    32: ((1, 1), (2, 1), (2, 1), (2, 1)),
}
STAGE_NAMES = ("conv1", "res2", "res3", "res4", "res5")
PADDING_STYLES = ("symmetric", "same")
# BatchNorm epsilon of keras.applications ResNet and of TF-slim (DrSleep's TF1 graph).
KERAS_BATCHNORM_EPSILON = 1.001e-5
SLIM_BATCHNORM_EPSILON = 1e-3
_KERAS_APPLICATIONS = {50: "ResNet50", 101: "ResNet101", 152: "ResNet152"}


def default_stem(weights):
    """(padding, BatchNorm epsilon) that the given `weights` were trained with.

    A TF1 DeepLab checkpoint (any path) ran TF 'SAME' padding with TF-slim's epsilon 1e-3;
    `keras.applications` (and random init) use symmetric padding and epsilon 1.001e-5.
    """
    if weights is not None and weights != "imagenet":
        return "same", SLIM_BATCHNORM_EPSILON
    return "symmetric", KERAS_BATCHNORM_EPSILON


def _stage_of(layer_name):
    """Which of `STAGE_NAMES` a layer belongs to (None for layers without weights)."""
    if layer_name in ("conv1", "bn_conv1"):
        return "conv1"
    for stage in (2, 3, 4, 5):
        if layer_name.startswith((f"res{stage}", f"bn{stage}")):
            return f"res{stage}"
    return None


@keras.saving.register_keras_serializable(package="cmsa_tf")
class AtrousResNet(keras.Model):
    """Caffe-style ResNet v1 with atrous (dilated) late stages, as DeepLab-v2.

    The stem is conv1 7x7/2 + BN + ReLU and a 3x3/2 max pool; res2..res5 are stacks of bottleneck
    blocks (depth 50/101/152: 1x1, 3x3, 1x1 with 4x expansion, the stride on the first 1x1 conv
    and on the projection shortcut, as Caffe ResNet and `keras.applications` do) or basic blocks
    (depth 18/34: two 3x3 convs, the stride on the first). `output_stride` 8 leaves res4 and res5
    unstrided with dilation 2 and 4 (DeepLab-v2, the paper's backbone), 16 strides res4 and dilates
    res5 by 2, 32 is the plain ResNet. Every 3x3 conv of a dilated stage is dilated, except, in
    basic blocks, the stage's first conv (the one that would carry the stride), which keeps the
    previous stage's dilation; so the dilated features are exactly the strided network's
    evaluated at every position. Convolutions have no bias (BatchNorm follows each one).

    Spatial sizes are `ceil(H / stride)` at every stride. `padding` says where the taps of the two
    strided convolutions with a window (conv1 and pool1; also the strided 3x3 convs of depth
    18/34) fall: "symmetric" pads `(k - 1) // 2` on every side and then applies a 'valid'
    convolution, as Caffe and `keras.applications` do (needed for ImageNet weights to reproduce
    Keras' features); "same" uses TensorFlow's 'SAME' padding (one pixel more at the bottom/right
    for even sizes), as DrSleep's TF1 DeepLab graph that the official CMSA code ran. The pool's
    zero padding equals -inf padding because its input is post-ReLU. All other convolutions pad
    symmetrically in both styles.

    Layer names are Caffe's: `conv1`, `bn_conv1`, `pool1`, `res2a_branch1`, `bn2a_branch1`,
    `res2a_branch2a`, ..., `res2a` (the sum), `res2a_relu`; ResNet-101/152 number the blocks of
    res3 and res4 (`res3b1`..`res3b3`, `res4b1`..`res4b22`), see `resnet_blocks.caffe_block_names`.

    The model is a functional `keras.Model` built in the constructor (keras-hub backbone style),
    so weights exist as soon as it is constructed and can be loaded there.

    Args:
        depth: 18, 34, 50, 101 or 152.
        output_stride: 8, 16 or 32, the stride of res5 (and of res4 at 8, res3 always has 8).
        width: channels of conv1 (64 in the standard nets); every stage scales with it.
        freeze_batchnorm: if True every BatchNorm runs in inference mode and its variables are
            not trainable (the official recipe), even when the model is later set trainable.
        trainable_stages: which of "conv1", "res2", "res3", "res4", "res5" are trainable;
            `()` freezes the whole backbone. Frozen stages also run BatchNorm in inference mode.
            The selection persists: `backbone.trainable = False` freezes everything and
            `backbone.trainable = True` (also through an enclosing model) restores exactly these
            stages. Set a layer's `trainable` directly to override it.
        weights: None (random initialisation), "imagenet" (copy `keras.applications`' ImageNet
            ResNet of this depth, downloaded by Keras; depth 50/101/152 and width 64 only) or the
            path of a TF1 DeepLab checkpoint with DrSleep's variable names (`load_tf1_checkpoint`).
        padding: "symmetric", "same" or None. None picks "same" for a TF1 checkpoint and
            "symmetric" otherwise.
        batchnorm_epsilon: BatchNorm epsilon, or None: 1e-3 (TF-slim, DrSleep's graph) for a TF1
            checkpoint and 1.001e-5 (keras.applications) otherwise.
        dtype: dtype policy of the layers (e.g. "mixed_float16"), or None for the global one.
        **kwargs: `name` and `trainable`, passed to `keras.Model`.

    Call arguments:
        images: `[B, H, W, 3]` float32, already preprocessed (BGR, mean subtracted).
        training: as for any Keras model; frozen BatchNorm ignores it.

    Returns:
        A dict `{"res3": [B, H/8, W/8, C3], "res4": [B, H/s4, W/s4, C4],
        "res5": [B, H/s, W/s, C5]}` of post-ReLU features; the channel counts are in
        `feature_channels` (512, 1024, 2048 for bottleneck nets with width 64; 128, 256, 512 for
        basic-block nets).

    Example:
    ```python
    backbone = AtrousResNet(depth=50, output_stride=8, width=8)
    features = backbone(np.zeros((1, 64, 64, 3), "float32"))
    features["res5"].shape  # (1, 8, 8, 256)
    ```

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
        Chen et al., "DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous
        Convolution, and Fully Connected CRFs", TPAMI 2018.
    """

    def __init__(
        self,
        depth=101,
        output_stride=8,
        width=64,
        freeze_batchnorm=True,
        trainable_stages=("res3", "res4", "res5"),
        weights=None,
        padding=None,
        batchnorm_epsilon=None,
        dtype=None,
        **kwargs,
    ):
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}; got {depth!r}.")
        if output_stride not in _STAGE_GEOMETRY:
            raise ValueError(
                f"output_stride must be one of {sorted(_STAGE_GEOMETRY)}; got {output_stride!r}."
            )
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer; got {width!r}.")
        if trainable_stages is None or isinstance(trainable_stages, str):
            raise ValueError(
                "trainable_stages must be a sequence of stage names (`()` for none), not "
                f"{trainable_stages!r}."
            )
        trainable_stages = tuple(trainable_stages)
        unknown = [s for s in trainable_stages if s not in STAGE_NAMES]
        if unknown:
            raise ValueError(
                f"trainable_stages has unknown stage names {unknown}; valid names are "
                f"{list(STAGE_NAMES)}."
            )
        if isinstance(weights, os.PathLike):
            weights = os.fspath(weights)
        if weights is not None and not isinstance(weights, str):
            raise ValueError(
                "weights must be None, 'imagenet' or the path of a TF1 checkpoint; "
                f"got {weights!r}."
            )
        if weights == "":
            raise ValueError("weights is an empty string; use None for random initialisation.")
        from_tf1 = weights is not None and weights != "imagenet"
        if weights == "imagenet":
            if depth not in _KERAS_APPLICATIONS:
                raise ValueError(
                    f"weights='imagenet' needs depth in {sorted(_KERAS_APPLICATIONS)} "
                    f"(keras.applications has no ResNet-{depth}); got depth={depth}."
                )
            if width != 64:
                raise ValueError(f"weights='imagenet' needs width=64; got width={width}.")
        default_padding, default_epsilon = default_stem(weights)
        if padding is None:
            padding = default_padding
        if padding not in PADDING_STYLES:
            raise ValueError(f"padding must be one of {PADDING_STYLES} or None; got {padding!r}.")
        if batchnorm_epsilon is None:
            batchnorm_epsilon = default_epsilon
        if isinstance(batchnorm_epsilon, bool) or not (
            isinstance(batchnorm_epsilon, (int, float)) and batchnorm_epsilon > 0
        ):
            raise ValueError(f"batchnorm_epsilon must be positive; got {batchnorm_epsilon!r}.")
        if isinstance(dtype, dict):
            dtype = keras.dtype_policies.deserialize(dtype)
        trainable = kwargs.pop("trainable", True)
        kwargs.setdefault("name", "atrous_resnet")

        # === Functional graph ===
        builder = ResNetGraphBuilder(
            depth=depth,
            width=width,
            padding=padding,
            epsilon=float(batchnorm_epsilon),
            dtype=dtype,
        )
        images = keras.Input(shape=(None, None, 3), name="images")
        features, feature_layer_names = builder.build(images, _STAGE_GEOMETRY[output_stride])
        super().__init__(inputs=images, outputs=features, **kwargs)

        # === Config ===
        self.depth = depth
        self.output_stride = output_stride
        self.width = width
        self.freeze_batchnorm = bool(freeze_batchnorm)
        self.trainable_stages = trainable_stages
        self.padding = padding
        self.batchnorm_epsilon = float(batchnorm_epsilon)
        self._layer_dtype = dtype
        self.block_type = DEPTHS[depth][0]
        expansion = 4 if self.block_type == "bottleneck" else 1
        self.feature_channels = {
            name: width * 2 ** (i + 1) * expansion for i, name in enumerate(FEATURE_NAMES)
        }
        self.feature_layer_names = feature_layer_names
        self.feature_strides = {
            "res3": 8,
            "res4": 8 if output_stride == 8 else 16,
            "res5": output_stride,
        }
        # Called directly: Keras skips `self.trainable = True` when it is already True.
        self._set_trainable(trainable)

        # === Weights ===
        if weights == "imagenet":
            application = getattr(keras.applications, _KERAS_APPLICATIONS[depth])
            reference = application(
                weights="imagenet", include_top=False, input_shape=(None, None, 3)
            )
            copy_keras_applications_weights(self, reference)
            del reference
            logging.info("AtrousResNet-%d: copied keras.applications ImageNet weights.", depth)
        elif from_tf1:
            report = load_tf1_checkpoint(self, weights)
            if not report.loaded:
                raise ValueError(
                    f"weights={weights!r}: no variable of the checkpoint matches the backbone "
                    f"(checkpoint prefix {report.prefix!r}); expected DrSleep's names such as "
                    f"'conv1/weights' and 'bn_conv1/gamma'. {report.summary()}"
                )
            if report.unassigned or report.shape_mismatches:
                logging.warning("AtrousResNet-%d: %s", depth, report.summary())
            else:
                logging.info("AtrousResNet-%d: %s", depth, report.summary())

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._set_trainable(value)

    def _set_trainable(self, value):
        # `trainable_stages` is an invariant: setting the backbone trainable re-enables exactly
        # those stages (never frozen BatchNorm); setting it not trainable freezes everything.
        value = bool(value)
        self._trainable = value
        for variable in self._trainable_variables:
            variable.trainable = value
        stages = getattr(self, "trainable_stages", None)
        for layer in self.layers:
            if stages is None:  # inside keras.Model's constructor, before the stages are set
                layer.trainable = value
                continue
            layer_trainable = value and _stage_of(layer.name) in stages
            if isinstance(layer, keras.layers.BatchNormalization) and self.freeze_batchnorm:
                layer_trainable = False
            layer.trainable = layer_trainable

    def get_config(self):
        # `weights` is always None here: the weights travel with the saved model, and
        # re-reading them at deserialisation would download or need the original file.
        # Padding and epsilon are stored resolved so the architecture does not depend on it.
        dtype = self._layer_dtype
        if dtype is not None and not isinstance(dtype, str):
            dtype = keras.dtype_policies.serialize(dtype)
        return {
            "name": self.name,
            "trainable": self.trainable,
            "depth": self.depth,
            "output_stride": self.output_stride,
            "width": self.width,
            "freeze_batchnorm": self.freeze_batchnorm,
            "trainable_stages": list(self.trainable_stages),
            "weights": None,
            "padding": self.padding,
            "batchnorm_epsilon": self.batchnorm_epsilon,
            "dtype": dtype,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
