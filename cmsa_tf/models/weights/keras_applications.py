"""Copies `keras.applications`' ImageNet ResNet v1 (50/101/152) into a bottleneck AtrousResNet."""

import keras


def _block_index(block):
    """1-based position of a Caffe block in its stage: "3a" -> 1, "3c" -> 3, "4b22" -> 23.

    Caffe's ResNet-101/152 number the blocks after the first (`res4b1`, ...); the others use
    letters (see `resnet_blocks.caffe_block_names`).
    """
    if len(block) > 2:  # numbered: "<stage>b<n>" is the (n + 1)-th block
        return int(block[2:]) + 1
    return ord(block[1]) - ord("a") + 1


def _keras_applications_name(caffe_name):
    """Maps a Caffe layer name of the backbone to keras.applications' ResNet layer name."""
    if caffe_name == "conv1":
        return "conv1_conv"
    if caffe_name == "bn_conv1":
        return "conv1_bn"
    is_bn = caffe_name.startswith("bn")
    block, branch = caffe_name[2 if is_bn else 3 :].split("_")
    stage = int(block[0])
    index = _block_index(block)
    part = {"branch1": 0, "branch2a": 1, "branch2b": 2, "branch2c": 3}[branch]
    return f"conv{stage}_block{index}_{part}_{'bn' if is_bn else 'conv'}"


def copy_keras_applications_weights(backbone, keras_resnet):
    """Copies a `keras.applications` ResNet v1 (50/101/152) into a bottleneck AtrousResNet.

    Keras' convolutions have biases and the backbone's do not; each bias `b` is folded exactly
    into the BatchNorm that follows (`moving_mean - b`). A different BatchNorm epsilon is folded
    into the moving variance. Dilation does not change weight shapes, so any output stride works.

    Args:
        backbone: an `AtrousResNet` with depth 50, 101 or 152.
        keras_resnet: `keras.applications.ResNet50/101/152(include_top=...)` of the same depth
            and with the backbone's width (64).

    Returns:
        A dict mapping each backbone layer name to the Keras layer name it was copied from.

    Raises:
        ValueError: if the architectures do not match (depth, a missing layer, a shape).
    """
    if getattr(backbone, "block_type", None) != "bottleneck":
        raise ValueError(
            "backbone must be a bottleneck AtrousResNet (depth 50, 101 or 152) to copy "
            f"keras.applications weights; got {type(backbone).__name__} with depth "
            f"{getattr(backbone, 'depth', None)}."
        )
    keras_layers = {layer.name: layer for layer in keras_resnet.layers}
    copied = {}
    for layer in backbone.layers:
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.BatchNormalization)):
            continue
        source_name = _keras_applications_name(layer.name)
        source = keras_layers.get(source_name)
        if source is None:
            raise ValueError(
                f"keras_resnet has no layer {source_name!r} for backbone layer {layer.name!r}; "
                f"is it a keras.applications ResNet-{backbone.depth}?"
            )
        copied[layer.name] = source_name
    used = set(copied.values())
    extra = [
        name
        for name, layer in keras_layers.items()
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.BatchNormalization))
        and name not in used
    ]
    if extra:
        raise ValueError(
            f"keras_resnet has {len(extra)} conv/BN layers the ResNet-{backbone.depth} backbone "
            f"lacks (first: {extra[:3]}); the depths differ."
        )

    backbone_layers = {layer.name: layer for layer in backbone.layers}
    for name, source_name in copied.items():
        target, source = backbone_layers[name], keras_layers[source_name]
        if isinstance(target, keras.layers.Conv2D):
            _assign(target.kernel, source.kernel.numpy(), f"{name}.kernel <- {source_name}")
            continue
        conv_source = keras_layers[source_name[: -len("_bn")] + "_conv"]
        bias = conv_source.bias.numpy() if conv_source.use_bias else 0.0
        variance = source.moving_variance.numpy() + (source.epsilon - target.epsilon)
        _assign(target.gamma, source.gamma.numpy(), f"{name}.gamma <- {source_name}")
        _assign(target.beta, source.beta.numpy(), f"{name}.beta <- {source_name}")
        _assign(
            target.moving_mean,
            source.moving_mean.numpy() - bias,
            f"{name}.moving_mean <- {source_name}",
        )
        _assign(
            target.moving_variance,
            variance.clip(min=0.0),
            f"{name}.moving_variance <- {source_name}",
        )
    return copied


def _assign(variable, value, what):
    if tuple(variable.shape) != tuple(value.shape):
        raise ValueError(
            f"shape mismatch copying {what}: backbone {tuple(variable.shape)}, "
            f"keras {tuple(value.shape)}; the widths differ (keras.applications needs width=64)."
        )
    variable.assign(value.astype(variable.dtype))
