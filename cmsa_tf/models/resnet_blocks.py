"""The layers of a Caffe ResNet v1 (basic and bottleneck blocks) with Caffe's layer names.

`ResNetGraphBuilder` creates and wires the stem and the four residual stages of one
`atrous_resnet.AtrousResNet`, given each stage's (stride, dilation); `caffe_block_names` gives the
names its blocks take, which the weight loaders (`weights/`) map from.
"""

import keras

# depth -> (block kind, blocks in res2..res5).
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
# The stages whose last block the backbone returns.
FEATURE_NAMES = ("res3", "res4", "res5")


def caffe_block_names(depth, stage):
    """Caffe names of the residual blocks of one stage, e.g. `["3a", "3b1", "3b2", "3b3"]`.

    Caffe's ResNet-101/152 prototxts (and DeepLab's) number the blocks of res3 and res4
    (`res3b1`, ..., `res4b22`); every other stage, and every stage of the shallower nets, uses
    letters (`res2a`, `res2b`, `res2c`).

    Args:
        depth: 18, 34, 50, 101 or 152.
        stage: 2, 3, 4 or 5.
    """
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)}; got {depth!r}.")
    if stage not in (2, 3, 4, 5):
        raise ValueError(f"stage must be 2, 3, 4 or 5; got {stage!r}.")
    num_blocks = DEPTHS[depth][1][stage - 2]
    if depth >= 101 and stage in (3, 4):
        return [f"{stage}a"] + [f"{stage}b{i}" for i in range(1, num_blocks)]
    return [f"{stage}{chr(ord('a') + i)}" for i in range(num_blocks)]


class ResNetGraphBuilder:
    """Creates the layers of one AtrousResNet and wires them on a symbolic input."""

    def __init__(self, depth, width, padding, epsilon, dtype):
        self.depth = depth
        self.width = width
        self.padding = padding
        self.epsilon = epsilon
        self.dtype = dtype
        self.block_type, _ = DEPTHS[depth]

    def build(self, images, geometry):
        # === Stem ===
        x = self._conv(images, self.width, 7, 2, 1, "conv1")  # [B, H/2, W/2, w]
        x = self._bn(x, "bn_conv1")
        x = keras.layers.ReLU(name="conv1_relu", dtype=self.dtype)(x)
        if self.padding == "symmetric":
            x = keras.layers.ZeroPadding2D(1, name="pool1_pad", dtype=self.dtype)(x)
            x = keras.layers.MaxPooling2D(3, 2, padding="valid", name="pool1", dtype=self.dtype)(x)
        else:
            x = keras.layers.MaxPooling2D(3, 2, padding="same", name="pool1", dtype=self.dtype)(x)
        # [B, H/4, W/4, w]

        # === Residual stages ===
        features, feature_layer_names = {}, {}
        in_channels = self.width
        previous_dilation = 1
        for stage, (stride, dilation) in zip((2, 3, 4, 5), geometry):
            filters = self.width * 2 ** (stage - 2)
            for index, block in enumerate(caffe_block_names(self.depth, stage)):
                block_stride = stride if index == 0 else 1
                if self.block_type == "bottleneck":
                    x = self._bottleneck(x, block, filters, block_stride, dilation, index == 0)
                    in_channels = 4 * filters
                else:
                    project = index == 0 and (block_stride != 1 or in_channels != filters)
                    # The conv that would carry the stride sees the previous stage's grid.
                    first_dilation = previous_dilation if index == 0 else dilation
                    x = self._basic(
                        x, block, filters, block_stride, first_dilation, dilation, project
                    )
                    in_channels = filters
            previous_dilation = dilation
            # [B, H/s, W/s, C_stage]
            if f"res{stage}" in FEATURE_NAMES:
                features[f"res{stage}"] = x
                feature_layer_names[f"res{stage}"] = f"res{block}_relu"
        return features, feature_layer_names

    def _bottleneck(self, x, block, filters, stride, dilation, project):
        shortcut = x
        if project:
            shortcut = self._conv(x, 4 * filters, 1, stride, 1, f"res{block}_branch1")
            shortcut = self._bn(shortcut, f"bn{block}_branch1")
        y = self._conv(x, filters, 1, stride, 1, f"res{block}_branch2a")
        y = self._bn(y, f"bn{block}_branch2a")
        y = keras.layers.ReLU(name=f"res{block}_branch2a_relu", dtype=self.dtype)(y)
        y = self._conv(y, filters, 3, 1, dilation, f"res{block}_branch2b")
        y = self._bn(y, f"bn{block}_branch2b")
        y = keras.layers.ReLU(name=f"res{block}_branch2b_relu", dtype=self.dtype)(y)
        y = self._conv(y, 4 * filters, 1, 1, 1, f"res{block}_branch2c")
        y = self._bn(y, f"bn{block}_branch2c")
        y = keras.layers.Add(name=f"res{block}", dtype=self.dtype)([shortcut, y])
        return keras.layers.ReLU(name=f"res{block}_relu", dtype=self.dtype)(y)

    def _basic(self, x, block, filters, stride, first_dilation, dilation, project):
        shortcut = x
        if project:
            shortcut = self._conv(x, filters, 1, stride, 1, f"res{block}_branch1")
            shortcut = self._bn(shortcut, f"bn{block}_branch1")
        y = self._conv(x, filters, 3, stride, first_dilation, f"res{block}_branch2a")
        y = self._bn(y, f"bn{block}_branch2a")
        y = keras.layers.ReLU(name=f"res{block}_branch2a_relu", dtype=self.dtype)(y)
        y = self._conv(y, filters, 3, 1, dilation, f"res{block}_branch2b")
        y = self._bn(y, f"bn{block}_branch2b")
        y = keras.layers.Add(name=f"res{block}", dtype=self.dtype)([shortcut, y])
        return keras.layers.ReLU(name=f"res{block}_relu", dtype=self.dtype)(y)

    def _conv(self, x, filters, kernel_size, stride, dilation, name):
        padding = "same"
        if stride > 1 and kernel_size > 1 and self.padding == "symmetric":
            # Caffe / keras.applications: pad (k - 1) // 2 on every side, then 'valid'.
            x = keras.layers.ZeroPadding2D(
                (kernel_size - 1) // 2, name=f"{name}_pad", dtype=self.dtype
            )(x)
            padding = "valid"
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=stride,
            dilation_rate=dilation,
            padding=padding,
            use_bias=False,
            kernel_initializer="he_normal",
            name=name,
            dtype=self.dtype,
        )(x)

    def _bn(self, x, name):
        return keras.layers.BatchNormalization(epsilon=self.epsilon, name=name, dtype=self.dtype)(x)
