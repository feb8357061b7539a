"""Eq. 6: the whole CMSA network, backbone to segmentation logits, and `build_model(config.model)`."""

import keras
import tensorflow as tf
from keras import layers, ops

from cmsa_tf.layers.ablated_cross_modal_attention import AblatedCrossModalAttention
from cmsa_tf.layers.conv_lstm_fusion import ConvLSTMFusion
from cmsa_tf.layers.cross_modal_self_attention import CrossModalSelfAttention
from cmsa_tf.layers.deconv_fusion import DeconvFusion
from cmsa_tf.layers.gated_multilevel_fusion import GatedMultiLevelFusion
from cmsa_tf.layers.pyramid_pooling_fusion import PyramidPoolingFusion
from cmsa_tf.layers.self_gated_fusion import SelfGatedFusion
from cmsa_tf.models.atrous_resnet import AtrousResNet

LEVEL_NAMES = ("res5", "res4", "res3")
# The ablations of Tables 2 and 3 (docs/ablations.md); each tuple starts with the paper's choice.
ATTENTION_VARIANTS = ("cmsa", "none", "word", "pixel", "word_pixel_pair")
WORD_REPRESENTATIONS = ("words", "sentence")
FUSIONS = ("gated", "single", "ppm", "deconv", "convlstm", "self_gated")
# Multi-level fusion layers other than the paper's, by `fusion` name.
_FUSION_LAYERS = {
    "ppm": PyramidPoolingFusion,
    "deconv": DeconvFusion,
    "convlstm": ConvLSTMFusion,
    "self_gated": SelfGatedFusion,
}


@keras.saving.register_keras_serializable(package="cmsa_tf")
class CMSASegmenter(keras.Model):
    """Cross-Modal Self-Attention network for referring image segmentation.

    An atrous ResNet gives res3 / res4 / res5 feature maps; at each level the word embeddings and the
    visual map form the multimodal feature of Eq. 1, cross-modal self-attention (Eq. 2-4) turns it
    into one feature map, a 1x1 conv + ReLU brings it to `fusion_channels`, gated multi-level fusion
    (Eq. 5) merges the levels, and a 3x3 conv scores each position (Eq. 6). The logits are
    bilinearly upsampled to the input size; `sigmoid` of them is the foreground probability.

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
        res5_projection_dim: optional 1x1 conv of res5 before Eq. 1 (the official code's 2048 -> 1000).
        fusion_channels: channels of every level entering the fusion (500 in the paper).
        query_chunk_size: query positions per chunk in the official form's bounded kernel.
        attention_variant: Table 2. `"cmsa"` (the full cross-modal self-attention), or an
            ablation of it (`AblatedCrossModalAttention`, paper form only): `"none"`, `"word"`,
            `"pixel"` or `"word_pixel_pair"`.
        word_representation: Table 3 (top). `"words"` (CMSA-W: every word is a word of Eq. 1) or
            `"sentence"` (CMSA-S: a masked LSTM of `embedding_dim` units encodes the
            sentence into its last hidden state, used as the only word, T = 1;
            `word_attention` then spreads each level's attention equally over the real
            words).
        fusion: Table 3 (bottom). `"gated"` (Eq. 5), `"single"` (only the first level, res5 by
            default: `levels` is cut to `levels[:1]`, no fusion), or a baseline over three
            levels: `"ppm"` (`PyramidPoolingFusion`), `"deconv"` (`DeconvFusion`, fuses at
            twice the resolution), `"convlstm"` (`ConvLSTMFusion`), `"self_gated"`
            (`SelfGatedFusion`). One level always skips the fusion (with `"gated"` or
            `"single"`).

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
        vocab_size,
        embedding_dim=1000,
        backbone_depth=101,
        output_stride=8,
        backbone_width=64,
        backbone_weights=None,
        backbone_padding=None,
        backbone_batchnorm_epsilon=None,
        freeze_batchnorm=True,
        trainable_stages=(),
        levels=LEVEL_NAMES,
        attention_form="paper",
        attention_implementation=None,
        key_dims=(512, 512, 512),
        reduce_dims=(None, None, None),
        res5_projection_dim=None,
        fusion_channels=500,
        query_chunk_size=256,
        attention_variant="cmsa",
        word_representation="words",
        fusion="gated",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value, allowed in (
            ("attention_variant", attention_variant, ATTENTION_VARIANTS),
            ("word_representation", word_representation, WORD_REPRESENTATIONS),
            ("fusion", fusion, FUSIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")
        if attention_variant != "cmsa" and attention_form != "paper":
            raise ValueError(
                f"attention_variant={attention_variant!r} is an ablation of the paper form; it "
                f"does not exist for attention_form={attention_form!r}. Use "
                "attention_form='paper' (or attention_variant='cmsa')."
            )
        levels = tuple(levels)
        unknown = [name for name in levels if name not in LEVEL_NAMES]
        if unknown or not levels or len(set(levels)) != len(levels):
            raise ValueError(
                f"levels must be distinct names from {LEVEL_NAMES}, got {levels!r}."
            )
        if len(levels) not in (1, 3):
            raise ValueError(
                "Gated multi-level fusion needs exactly three levels (or one level, which skips "
                f"the fusion); got {levels!r}."
            )
        key_dims = tuple(key_dims)
        reduce_dims = tuple(reduce_dims)
        for name, value in (("key_dims", key_dims), ("reduce_dims", reduce_dims)):
            if len(value) != len(levels):
                raise ValueError(
                    f"{name} needs one entry per level {levels!r}, got {value!r}."
                )
        if len(levels) == 1 and fusion not in ("gated", "single"):
            raise ValueError(
                f"fusion={fusion!r} fuses three levels; got the single level {levels!r}. Use "
                "fusion='single' for one level."
            )
        if fusion == "single":
            levels, key_dims, reduce_dims = levels[:1], key_dims[:1], reduce_dims[:1]
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
        self.attention_variant = attention_variant
        self.word_representation = word_representation
        # `self.fusion` is the fusion layer (its checkpoint name predates the option).
        self.fusion_method = fusion

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
        # The authors' lookup table: uniform in [-0.08, 0.08], no LSTM (spec, Eq. 1).
        self.word_embedding = layers.Embedding(
            self.vocab_size,
            embedding_dim,
            embeddings_initializer=keras.initializers.RandomUniform(-0.08, 0.08),
            name="word_embedding",
        )
        # CMSA-S: the sentence as one vector (the last hidden state over the real words).
        self.sentence_encoder = None
        if word_representation == "sentence":
            self.sentence_encoder = layers.LSTM(embedding_dim, name="sentence_encoder")
            # The cell's (unused) dropout RNG state sits in a list that tf.train.Checkpoint does
            # not see; a named attribute puts it in training checkpoints with the other variables.
            seed_generator = getattr(self.sentence_encoder.cell, "seed_generator", None)
            if seed_generator is not None:
                self.sentence_encoder_seed_state = seed_generator.state
        self.res5_projection = None
        if res5_projection_dim and "res5" in levels:
            self.res5_projection = layers.Conv2D(
                res5_projection_dim, 1, name="res5_projection"
            )
        # Per-level layers live in named attributes (res5_cmsa, ...), not lists: tf.train.Checkpoint
        # only tracks layers held in attributes, and training checkpoints go through it.
        # `<level>_cmsa` is the level's attention module, whatever `attention_variant` is.
        for name, key_dim, reduce_dim in zip(levels, key_dims, reduce_dims):
            if attention_variant == "cmsa":
                attention = CrossModalSelfAttention(
                    form=attention_form,
                    implementation=attention_implementation,
                    key_dim=key_dim,
                    reduce_dim=reduce_dim,
                    query_chunk_size=query_chunk_size,
                    name=f"{name}_cmsa",
                )
            else:
                attention = AblatedCrossModalAttention(
                    variant=attention_variant, key_dim=key_dim, name=f"{name}_cmsa"
                )
            setattr(self, f"{name}_cmsa", attention)
            setattr(
                self,
                f"{name}_fusion_projection",
                layers.Conv2D(
                    fusion_channels, 1, activation="relu", name=f"{name}_fusion_projection"
                ),
            )
        self.fusion = None
        if len(levels) == 3 and fusion == "gated":
            self.fusion = GatedMultiLevelFusion(channels=fusion_channels, name="gated_fusion")
        elif len(levels) == 3:
            self.fusion = _FUSION_LAYERS[fusion](channels=fusion_channels, name=f"{fusion}_fusion")
        self.score = layers.Conv2D(1, 3, padding="same", name="score")

    def call(self, inputs, training=None, return_attention=False):
        """Runs the network.

        Args:
            inputs: dict with `"image"` float32 [B, H, W, 3] (BGR, mean-subtracted) and `"words"`
                int32 [B, T] (0 = padding).
            training: Keras training flag.
            return_attention: also return the per-level word attention and the fused features.

        Returns:
            logits float32 [B, H, W, 1]; with `return_attention`, a dict with `"logits"`,
            `"word_attention"` float32 [B, levels, T] (rows in `levels` order, Fig. 4) and
            `"features"` [B, h, w, fusion_channels] (the fused map, for Fig. 5 heat maps).
        """
        if not isinstance(inputs, dict) or "image" not in inputs or "words" not in inputs:
            raise ValueError(
                "CMSASegmenter expects a dict with keys 'image' [B, H, W, 3] and 'words' [B, T]; "
                f"got {type(inputs).__name__}"
                + (f" with keys {sorted(inputs)}" if isinstance(inputs, dict) else "")
                + "."
            )
        images = inputs["image"]
        words = ops.cast(inputs["words"], "int32")
        word_mask = ops.cast(ops.not_equal(words, 0), self.compute_dtype)  # [B, T]
        embeddings = self.word_embedding(words)  # [B, T, Cl]
        level_words, level_mask = embeddings, word_mask
        if self.sentence_encoder is not None:
            sentence = self.sentence_encoder(embeddings, mask=ops.not_equal(words, 0))  # [B, Cl]
            level_words = sentence[:, None, :]  # [B, 1, Cl]: the sentence is the only word
            level_mask = ops.max(word_mask, axis=1, keepdims=True)  # [B, 1]: 0 if no word
            # Each real word's share of the sentence's attention: 1/N.
            word_share = word_mask / ops.maximum(ops.sum(word_mask, axis=1, keepdims=True), 1.0)
        features = self.backbone(images, training=training)

        level_maps = []
        word_attention = []
        for name, attention, projection in zip(
            self.levels, self.attention_layers, self.level_projections
        ):
            visual = features[name]  # [B, h, w, Cv]
            if name == "res5" and self.res5_projection is not None:
                visual = self.res5_projection(visual)
            attended, scores = attention(
                visual, level_words, level_mask, return_attention=True
            )  # [B, h, w, C_level]
            if self.sentence_encoder is not None:
                word_attention.append(scores["word_attention"] * word_share)  # [B, 1] -> [B, T]
            else:
                word_attention.append(scores["word_attention"])  # [B, T]
            level_maps.append(projection(attended))  # [B, h, w, fusion_channels]

        # Levels differ in size only at output stride 16 / 32: bring them to the finest one.
        # Decided from the backbone's static strides, so unknown image sizes work in a graph.
        strides = self.backbone.feature_strides
        finest = min(strides[name] for name in self.levels)
        target_size = None
        for name, x in zip(self.levels, level_maps):
            if strides[name] == finest:
                target_size = tf.shape(x)[1:3]
                break
        level_maps = [
            x if strides[name] == finest else tf.image.resize(x, target_size, method="bilinear")
            for name, x in zip(self.levels, level_maps)
        ]
        fused = self.fusion(level_maps) if self.fusion is not None else level_maps[0]
        logits = self.score(fused)  # [B, h, w, 1]
        logits = tf.image.resize(
            logits, tf.shape(images)[1:3], method="bilinear"
        )  # [B, H, W, 1]
        logits = ops.cast(logits, "float32")
        if not return_attention:
            return logits
        return {
            "logits": logits,
            "word_attention": ops.cast(ops.stack(word_attention, axis=1), "float32"),
            "features": fused,
        }

    @property
    def attention_layers(self):
        """The per-level `CrossModalSelfAttention` layers, in `levels` order."""
        return [getattr(self, f"{name}_cmsa") for name in self.levels]

    @property
    def level_projections(self):
        """The per-level 1x1 convs to `fusion_channels`, in `levels` order."""
        return [getattr(self, f"{name}_fusion_projection") for name in self.levels]

    @property
    def gammas(self):
        """The gated fusion's learnable ratios gamma_i (empty without the gated fusion)."""
        return list(getattr(self.fusion, "gammas", []))

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
            attention_variant=self.attention_variant,
            word_representation=self.word_representation,
            fusion=self.fusion_method,
        )
        return config


def build_model(model_config, vocab_size=None, image_size=None, max_words=None):
    """Builds a `CMSASegmenter` from `config.model` (see `cmsa_tf/configs.py`).

    Args:
        model_config: the `config.model` ConfigDict.
        vocab_size: overrides `model_config.vocab_size` (e.g. from a TFRecord manifest).
        image_size, max_words: if both are given, the model is built by calling it once on zeros
            of that size, so its weights exist (and can be restored) straight away.
    """
    vocab_size = vocab_size if vocab_size is not None else model_config.get("vocab_size")
    if vocab_size is None:
        raise ValueError(
            "The vocabulary size is unknown: set config.model.vocab_size or pass vocab_size "
            "(training reads it from the TFRecord manifest)."
        )
    backbone = model_config.backbone
    attention = model_config.attention
    model = CMSASegmenter(
        vocab_size=vocab_size,
        embedding_dim=model_config.embedding_dim,
        backbone_depth=backbone.depth,
        output_stride=backbone.output_stride,
        backbone_width=backbone.width,
        backbone_weights=backbone.weights,
        backbone_padding=backbone.get("padding"),
        backbone_batchnorm_epsilon=backbone.get("batchnorm_epsilon"),
        freeze_batchnorm=backbone.freeze_batchnorm,
        trainable_stages=tuple(backbone.trainable_stages),
        levels=tuple(model_config.levels),
        attention_form=attention.form,
        attention_implementation=attention.implementation,
        key_dims=tuple(attention.key_dims),
        reduce_dims=tuple(attention.reduce_dims),
        res5_projection_dim=model_config.get("res5_projection_dim"),
        fusion_channels=model_config.fusion_channels,
        query_chunk_size=attention.query_chunk_size,
        attention_variant=attention.get("variant", "cmsa"),
        word_representation=model_config.get("word_representation", "words"),
        fusion=model_config.get("fusion", "gated"),
        name="cmsa",
    )
    if image_size is not None and max_words is not None:
        model(
            {
                "image": ops.zeros((1, image_size, image_size, 3)),
                "words": ops.ones((1, max_words), dtype="int32"),
            }
        )
    return model
