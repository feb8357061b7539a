"""Eq. 6: the whole CMSA network, backbone to logits.

`CMSASegmenter` takes plain keyword arguments; `cmsa_tf.models.factory.build_model` makes one
from `config.model`.
"""

import keras
import tensorflow as tf
from keras import layers, ops

from cmsa_tf.layers import real_words
from cmsa_tf.layers.official_kernels import DEFAULT_ATTENTION_MEMORY_BYTES
from cmsa_tf.models import components
from cmsa_tf.models.atrous_resnet import AtrousResNet
from cmsa_tf.models.components import LEVEL_NAMES

UPSAMPLING = ("half_pixel", "tf1")


def upsample(logits, size, upsampling: str = "half_pixel"):
    """Bilinear resize of [B, h, w, C] to `size`; `"tf1"`: TF1 `resize_bilinear` (source i*h/H)."""
    if upsampling == "tf1":
        return tf.compat.v1.image.resize_bilinear(
            logits, size, align_corners=False, half_pixel_centers=False
        )
    return tf.image.resize(logits, size, method="bilinear")


@keras.saving.register_keras_serializable(package="cmsa_tf")
class CMSASegmenter(keras.Model):
    """Cross-Modal Self-Attention network for referring image segmentation.

    An atrous ResNet gives res3 / res4 / res5 feature maps; at each level the word embeddings and
    the visual map form the multimodal feature of Eq. 1, cross-modal self-attention (Eq. 2-4)
    turns it into one feature map, a 1x1 conv + ReLU brings it to `fusion_channels`, gated
    multi-level fusion (Eq. 5) merges the levels, and a 3x3 conv scores each position (Eq. 6). The
    logits are bilinearly upsampled to the input size; `sigmoid` of them is the foreground
    probability (docs/design.md, "Where each equation lives").

    Args:
        vocab_size: number of word ids (id 0 is padding).
        embedding_dim: word embedding size `Cl` (1000 in the paper).
        backbone_depth: ResNet depth, 18 / 34 / 50 / 101.
        output_stride: backbone output stride, 8 (the paper), 16 or 32.
        backbone_width: base width of the ResNet (64 is the standard network).
        backbone_weights: `None`, `"imagenet"`, or a TF1 DeepLab checkpoint path.
        backbone_padding, backbone_batchnorm_epsilon: see `AtrousResNet`; `None` picks what the
            weights need (TF "same" padding and epsilon 1e-3 for a TF1 checkpoint).
        freeze_batchnorm: keep the backbone's BatchNorm in inference mode (the authors).
        trainable_stages: backbone stages to train, e.g. `()` (the authors' command) or
            `("res3", "res4", "res5")`.
        levels: backbone levels to attend over, highest first; the paper uses all three.
        attention_form: `"paper"` or `"official"` (see `CrossModalSelfAttention`).
        attention_implementation: kernel of that form; `None` picks its default.
        key_dims: attention dimension `d` per level.
        reduce_dims: per level, the official form's reduction of the multimodal feature (or None).
        res5_projection_dim: optional 1x1 conv of res5 before Eq. 1 (the official code's
            2048 -> 1000).
        fusion_channels: channels of every level entering the fusion (500 in the paper).
        query_chunk_size: query positions per chunk in the official form's bounded kernel.
        attention_memory_bytes: memory each level's attention may keep for the backward pass
            (default 1 GiB; see `CrossModalSelfAttention`): above it the official kernel
            recomputes its attention in chunks and the paper kernel goes one word at a time.
        attention_variant: Table 2. `"cmsa"` (the full cross-modal self-attention), or an
            ablation of it (`AblatedCrossModalAttention`, paper form only): `"none"`, `"word"`,
            `"pixel"` or `"word_pixel_pair"`.
        word_representation: Table 3 (top). `"words"` (CMSA-W: every word is a word of Eq. 1) or
            `"sentence"` (CMSA-S: a masked LSTM of `embedding_dim` units encodes the
            sentence into its last hidden state, used as the only word, T = 1;
            `word_attention` then spreads each level's attention equally over the real
            words).
        fusion: Table 3 (bottom). `"gated"` (Eq. 5), `"single"` (one level, no fusion: `levels`
            must hold one level, e.g. `("res5",)`), or a baseline over three levels: `"ppm"`
            (`PyramidPoolingFusion`), `"deconv"` (`DeconvFusion`, fuses at twice the
            resolution), `"convlstm"` (`ConvLSTMFusion`), `"self_gated"` (`SelfGatedFusion`).
            One level always skips the fusion (with `"gated"` or `"single"`).
        upsampling: how the score map is resized to the input: `"half_pixel"` (bilinear with
            half-pixel centres) or `"tf1"` (TF1 `resize_bilinear`, align_corners=False and
            half_pixel_centers=False, source pixel = i / stride: the authors' code).
        word_context: beyond the paper: `"none"` (the paper's bag of words), `"bilstm"` or
            `"positions"` (`ContextualWords`: word order added to each word before Eq. 1; with
            `word_representation="words"` only).

    The backbone is made in the constructor (a functional model whose pretrained weights load
    there); the other layers are made and built in `build`, in the order of `call`, which fixes
    the order of `model.weights`. The variants are chosen once, by the factories of
    `cmsa_tf.models.components`.

    Example:
    >>> model = CMSASegmenter(vocab_size=100, embedding_dim=16, backbone_depth=18,
    ...                       backbone_width=8, key_dims=(8, 8, 8), fusion_channels=8)
    >>> logits = model({"image": images, "words": word_ids})  # [B, H, W, 1]

    Reference:
        Ye, Rochan, Liu, Wang. Cross-Modal Self-Attention Network for Referring Image Segmentation.
        CVPR 2019.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 1000,
        backbone_depth: int = 101,
        output_stride: int = 8,
        backbone_width: int = 64,
        backbone_weights: str | None = None,
        backbone_padding: str | None = None,
        backbone_batchnorm_epsilon: float | None = None,
        freeze_batchnorm: bool = True,
        trainable_stages: tuple = (),
        levels: tuple = LEVEL_NAMES,
        attention_form: str = "paper",
        attention_implementation: str | None = None,
        key_dims: tuple = (512, 512, 512),
        reduce_dims: tuple = (None, None, None),
        res5_projection_dim: int | None = None,
        fusion_channels: int = 500,
        query_chunk_size: int = 256,
        attention_memory_bytes: int = DEFAULT_ATTENTION_MEMORY_BYTES,
        attention_variant: str = "cmsa",
        word_representation: str = "words",
        fusion: str = "gated",
        upsampling: str = "half_pixel",
        word_context: str = "none",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if upsampling not in UPSAMPLING:
            raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {upsampling!r}.")
        components.check_attention(attention_variant, attention_form)
        components.check_word_representation(word_representation)
        components.check_word_context(word_context, word_representation)
        levels, key_dims, reduce_dims = components.check_levels(levels, key_dims, reduce_dims)
        components.check_fusion(fusion, len(levels))
        if vocab_size is None or int(vocab_size) < 2:
            raise ValueError(
                f"vocab_size must be an integer >= 2 (id 0 is padding), got {vocab_size!r}."
            )

        self.vocab_size = int(vocab_size)
        self.embedding_dim = embedding_dim
        self.backbone_depth = backbone_depth
        self.output_stride = output_stride
        self.backbone_width = backbone_width
        self.backbone_weights = backbone_weights
        self.backbone_padding = backbone_padding
        self.backbone_batchnorm_epsilon = backbone_batchnorm_epsilon
        self.freeze_batchnorm = freeze_batchnorm
        self.trainable_stages = tuple(trainable_stages)
        self.levels = levels
        self.attention_form = attention_form
        self.attention_implementation = attention_implementation
        self.key_dims = key_dims
        self.reduce_dims = reduce_dims
        self.res5_projection_dim = res5_projection_dim
        self.fusion_channels = fusion_channels
        self.query_chunk_size = query_chunk_size
        self.attention_memory_bytes = attention_memory_bytes
        self.attention_variant = attention_variant
        self.word_representation = word_representation
        self.fusion = fusion
        self.upsampling = upsampling
        self.word_context = word_context

        self.backbone = AtrousResNet(
            depth=backbone_depth,
            output_stride=output_stride,
            width=backbone_width,
            freeze_batchnorm=freeze_batchnorm,
            trainable_stages=self.trainable_stages,
            weights=backbone_weights,
            padding=backbone_padding,
            batchnorm_epsilon=backbone_batchnorm_epsilon,
            name="backbone",
        )

    def build(self, input_shape):
        image_shape, words_shape = self._check_inputs(input_shape)
        batch = words_shape[0]  # expressions (with `image_index`, images may be fewer)
        strides = self.backbone.feature_strides

        def level_shape(name, channels):  # [B, ceil(H / stride), ceil(W / stride), channels]
            size = [None if n is None else -(-n // strides[name]) for n in image_shape[1:3]]
            return (batch, *size, channels)

        # Eq. 1's words: the authors' lookup table, uniform in [-0.08, 0.08] (docs/design.md,
        # "Word representations"), then the word encoder of `word_representation`.
        self.word_embedding = layers.Embedding(
            self.vocab_size,
            self.embedding_dim,
            embeddings_initializer=keras.initializers.RandomUniform(-0.08, 0.08),
            name="word_embedding",
        )
        self.word_embedding.build(words_shape)
        embeddings_shape = (*words_shape, self.embedding_dim)
        self.word_encoder = components.build_word_encoder(
            self.word_representation, self.embedding_dim, self.word_context
        )
        self.word_encoder.build(embeddings_shape, words_shape)
        level_words_shape, level_mask_shape, _ = self.word_encoder.compute_output_shape(
            embeddings_shape, words_shape
        )
        # An RNG state the encoder holds outside tracked attributes (the CMSA-S LSTM's) becomes
        # a variable of the model, so tf.train.Checkpoint saves it (first in `model.weights`).
        self.word_encoder_seed_state = self.word_encoder.seed_state

        channels = dict(self.backbone.feature_channels)
        self.res5_projection = None
        if self.res5_projection_dim and "res5" in self.levels:
            self.res5_projection = layers.Conv2D(
                self.res5_projection_dim, 1, name="res5_projection"
            )
            self.res5_projection.build(level_shape("res5", channels["res5"]))
            channels["res5"] = self.res5_projection_dim
        # Per-level layers live in named attributes (res5_attention, ...), not lists:
        # tf.train.Checkpoint only tracks layers held in attributes, and training checkpoints go
        # through it.
        for name, key_dim, reduce_dim in zip(self.levels, self.key_dims, self.reduce_dims):
            attention = components.build_attention(
                self.attention_variant,
                form=self.attention_form,
                implementation=self.attention_implementation,
                key_dim=key_dim,
                reduce_dim=reduce_dim,
                query_chunk_size=self.query_chunk_size,
                attention_memory_bytes=self.attention_memory_bytes,
                name=f"{name}_attention",
            )
            visual_shape = level_shape(name, channels[name])
            attention.build(visual_shape, level_words_shape, level_mask_shape)
            attended_shape = attention.compute_output_shape(
                visual_shape, level_words_shape, level_mask_shape
            )
            projection = layers.Conv2D(
                self.fusion_channels, 1, activation="relu", name=f"{name}_fusion_projection"
            )
            projection.build(attended_shape)
            setattr(self, f"{name}_attention", attention)
            setattr(self, f"{name}_fusion_projection", projection)
        # The levels are fused at the finest level's size (`_at_finest_resolution`); the ConvLSTM
        # fusion needs that size to be known here.
        finest = min(self.levels, key=strides.get)
        level_shapes = [level_shape(finest, self.fusion_channels)] * len(self.levels)
        self.fusion_layer = components.build_fusion(
            self.fusion, self.fusion_channels, len(self.levels)
        )
        self.fusion_layer.build(level_shapes)
        self.score = layers.Conv2D(1, 3, padding="same", name="score")
        self.score.build(self.fusion_layer.compute_output_shape(level_shapes))

    def call(self, inputs, training=None, return_attention=False):
        """Runs the network.

        Args:
            inputs: dict with `"image"` float32 [B, H, W, 3] (BGR, mean-subtracted) and `"words"`
                int32 [B, T] (0 = padding). Optionally `"image_index"` int32 [B]: expression b
                is about image `image[image_index[b]]` of an `"image"` batch [G, H, W, 3], so
                each image runs the backbone once for all its expressions (training batches of
                `cmsa_tf.data.image_groups`); the result equals that of `"image"` gathered to
                [B, H, W, 3], apart from BatchNorm statistics in training mode.
            training: Keras training flag.
            return_attention: also return the per-level word attention and the fused features.

        Returns:
            logits float32 [B, H, W, 1]; with `return_attention`, a dict with `"logits"`,
            `"word_attention"` float32 [B, levels, T] (rows in `levels` order, Fig. 4) and
            `"features"` [B, h, w, fusion_channels] (the fused map, for Fig. 5 heat maps) and
            `"level_features"` [B, levels, h, w, fusion_channels] (each level's map entering
            Eq. 5, at the finest level's size; per-level heat maps).
        """
        self._check_inputs(inputs)
        images = inputs["image"]
        words = ops.cast(inputs["words"], "int32")  # [B, T]
        # Only the words that exist: each row's real words first (stable), cut to the batch's
        # longest expression L; padding contributes nothing (docs/design.md, "Real words only").
        num_words = tf.shape(words)[1]
        order, length = real_words.pack_real_words(words)
        words = real_words.gather_words(words, order, length)  # [B, L]
        word_mask = ops.cast(ops.not_equal(words, 0), self.compute_dtype)  # [B, L]
        # Eq. 1's words: [B, T', Cl] and [B, T'] (T' = L, or 1 for the sentence), and each
        # expression word's share of a level word's attention [B, L].
        level_words, level_mask, word_share = self.word_encoder(
            self.word_embedding(words), word_mask
        )
        features = self.backbone(images, training=training)  # levels [G, h, w, C]
        image_index = inputs.get("image_index")
        if image_index is not None:  # each expression's image: levels [B, h, w, C]
            features = {name: ops.take(features[name], image_index, axis=0) for name in self.levels}

        level_maps = []
        word_attention = []
        for name, attention, projection in zip(
            self.levels, self.attention_layers, self.level_projections
        ):
            # Eq. 1-4: the level's cross-modal self-attentive features [B, h, w, C_level].
            attended, scores = attention(
                self._visual_features(name, features),
                level_words,
                level_mask,
                return_attention=True,
            )
            word_attention.append(  # [B, T], at the input's word positions
                real_words.unpack_words(scores["word_attention"] * word_share, order, num_words)
            )
            level_maps.append(projection(attended))  # [B, h, w, fusion_channels]

        # Eq. 5: the levels fused into one map.
        level_maps = self._at_finest_resolution(level_maps)
        fused = self.fusion_layer(level_maps)
        # Eq. 6: scores, upsampled to the image.
        logits = self.score(fused)  # [B, h, w, 1]
        logits = upsample(logits, tf.shape(images)[1:3], self.upsampling)  # [B, H, W, 1]
        logits = ops.cast(logits, "float32")
        if not return_attention:
            return logits
        return {
            "logits": logits,
            "word_attention": ops.cast(ops.stack(word_attention, axis=1), "float32"),
            "features": fused,
            "level_features": ops.stack(level_maps, axis=1),
        }

    @staticmethod
    def _check_inputs(inputs):
        """`(image, words)` of the inputs dict (tensors or shapes); a clear error otherwise."""
        if not isinstance(inputs, dict) or "image" not in inputs or "words" not in inputs:
            raise ValueError(
                "CMSASegmenter expects a dict with keys 'image' [B, H, W, 3] and 'words' [B, T]; "
                f"got {type(inputs).__name__}"
                + (f" with keys {sorted(inputs)}" if isinstance(inputs, dict) else "")
                + "."
            )
        image, words = inputs["image"], inputs["words"]
        if isinstance(image, (list, tuple)):  # shapes (build), as tuples
            image, words = tuple(image), tuple(words)
        return image, words

    def _visual_features(self, name, features):
        """The visual features V of one level for Eq. 1 [B, h, w, Cv]."""
        visual = features[name]
        if name == "res5" and self.res5_projection is not None:
            visual = self.res5_projection(visual)  # the official code's 2048 -> 1000
        return visual

    def _at_finest_resolution(self, level_maps):
        """The level maps resized (bilinear) to the finest level's size.

        Levels differ in size only at output stride 16 / 32. Decided from the backbone's static
        strides, so unknown image sizes work in a graph.
        """
        strides = self.backbone.feature_strides
        finest = min(strides[name] for name in self.levels)
        target_size = None
        for name, x in zip(self.levels, level_maps):
            if strides[name] == finest:
                target_size = tf.shape(x)[1:3]
                break
        return [
            x if strides[name] == finest else tf.image.resize(x, target_size, method="bilinear")
            for name, x in zip(self.levels, level_maps)
        ]

    @property
    def attention_layers(self):
        """The per-level Eq. 2-4 layers, in `levels` order (after `build`).

        `CrossModalSelfAttention` for `attention_variant="cmsa"`, `AblatedCrossModalAttention`
        for the other variants.
        """
        return [getattr(self, f"{name}_attention") for name in self.levels]

    @property
    def level_projections(self):
        """The per-level 1x1 convs to `fusion_channels`, in `levels` order (after `build`)."""
        return [getattr(self, f"{name}_fusion_projection") for name in self.levels]

    @property
    def gammas(self):
        """The gated fusion's learnable ratios gamma_i (empty without the gated fusion)."""
        return list(getattr(getattr(self, "fusion_layer", None), "gammas", []))

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            embedding_dim=self.embedding_dim,
            backbone_depth=self.backbone_depth,
            output_stride=self.output_stride,
            backbone_width=self.backbone_width,
            # Weights travel with the saved model; do not reload them from the source.
            backbone_weights=None,
            # The resolved stem of the weights actually loaded, so a reload rebuilds the same net.
            backbone_padding=self.backbone.padding,
            backbone_batchnorm_epsilon=self.backbone.batchnorm_epsilon,
            freeze_batchnorm=self.freeze_batchnorm,
            trainable_stages=self.trainable_stages,
            levels=self.levels,
            attention_form=self.attention_form,
            attention_implementation=self.attention_implementation,
            key_dims=self.key_dims,
            reduce_dims=self.reduce_dims,
            res5_projection_dim=self.res5_projection_dim,
            fusion_channels=self.fusion_channels,
            query_chunk_size=self.query_chunk_size,
            attention_memory_bytes=self.attention_memory_bytes,
            attention_variant=self.attention_variant,
            word_representation=self.word_representation,
            fusion=self.fusion,
            upsampling=self.upsampling,
            word_context=self.word_context,
        )
        return config


def __getattr__(name):
    # `build_model` lived here before `cmsa_tf.models.factory`; imported on first use, since the
    # factory imports this module.
    if name == "build_model":
        from cmsa_tf.models.factory import build_model

        return build_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
