"""Config builders shared by the files in `configs/`.

The files in `configs/` are what users pass to `--config`; each is a few lines that call one of
these builders, so the paper's recipe is written once. Only `build_model` and the absl mains read
configs; layers take plain keyword arguments.

`config.model.levels` and the per-level `attention.key_dims` / `attention.reduce_dims` always list
the three levels res5, res4, res3. With `model.fusion = "single"` (the one-level reference of
Tables 2-3) `build_model` passes only their first entries (res5) to the model.
"""

import ml_collections

# Per-level settings of the authors' released code (docs/design.md, "The official-code form"), in
# level order res5, res4, res3.
OFFICIAL_KEY_DIMS = (512, 128, 64)
OFFICIAL_REDUCE_DIMS = (None, 256, 128)
OFFICIAL_RES5_PROJECTION = 1000

VALID_ARGS = ("", "paper", "official", "authors")


def parse_config_arg(arg: str | None) -> str:
    """The config argument of a config file (`--config=FILE:ARG`), normalised.

    `None` or `""` -> "paper"; "paper", "official" or "authors" as given; anything else is a
    ValueError. "authors" is the official attention form plus the rest of the authors' released
    model (`authors_config`); `attention_form` gives the form of each argument.
    """
    arg = (arg or "").strip()
    if arg not in VALID_ARGS:
        raise ValueError(
            f"Unknown config argument {arg!r}; expected one of {VALID_ARGS[1:]} "
            "(e.g. --config=configs/refcoco_unc.py:official)."
        )
    return arg or "paper"


def attention_form(arg: str | None) -> str:
    """The attention form of a config argument: "paper", or "official" for official / authors."""
    return "paper" if parse_config_arg(arg) == "paper" else "official"


def model_config(form: str = "paper") -> ml_collections.ConfigDict:
    """The CMSA model of the paper (ResNet-101 OS8, embedding 1000, fusion 500)."""
    model = ml_collections.ConfigDict()
    # Filled from the TFRecord manifest's vocabulary at train time, or set by hand.
    model.vocab_size = ml_collections.config_dict.placeholder(int)
    model.embedding_dim = 1000
    model.backbone = ml_collections.ConfigDict(
        dict(
            depth=101,
            output_stride=8,
            width=64,
            # "imagenet" (keras.applications), None, or a TF1 DeepLab checkpoint path such as the
            # authors' starting point.
            weights="imagenet",
            # None: what the weights need (TF "same" / epsilon 1e-3 for a TF1 checkpoint).
            padding=ml_collections.config_dict.placeholder(str),
            batchnorm_epsilon=ml_collections.config_dict.placeholder(float),
            freeze_batchnorm=True,
            # The authors' documented command trains the CMSA head only; their flag unfreezes
            # res3-res5: --config.model.backbone.trainable_stages="('res3','res4','res5')".
            trainable_stages=(),
        )
    )
    model.levels = ("res5", "res4", "res3")
    model.attention = ml_collections.ConfigDict()
    model.attention.form = form
    # An int field in both forms (--config.model.res5_projection_dim=N or None); None: none.
    model.res5_projection_dim = ml_collections.FieldReference(
        OFFICIAL_RES5_PROJECTION if form == "official" else None, field_type=int
    )
    if form == "paper":
        model.attention.implementation = "factorized"
        model.attention.key_dims = (512, 512, 512)
        model.attention.reduce_dims = (None, None, None)
    else:
        model.attention.implementation = "chunked"
        model.attention.key_dims = OFFICIAL_KEY_DIMS
        model.attention.reduce_dims = OFFICIAL_REDUCE_DIMS
    model.attention.query_chunk_size = 256
    # Bytes each level's attention may keep for the backward pass (docs/design.md, "The
    # official-code form", Memory): above it the official kernel recomputes its attention in
    # chunks of `query_chunk_size` positions (summed over the batch) and the paper kernel goes
    # one word at a time (as it always does without a GPU). This is
    # `official_kernels.DEFAULT_ATTENTION_MEMORY_BYTES` (1 GiB), written out so that the configs
    # do not import TensorFlow; tests/test_configs.py keeps the two equal.
    model.attention.attention_memory_bytes = 1 << 30
    # Table 2: "cmsa" (the paper), or the ablations "none", "word", "pixel", "word_pixel_pair"
    # (paper form only; docs/ablations.md).
    model.attention.variant = "cmsa"
    # Table 3 (top): "words" (CMSA-W, the paper) or "sentence" (CMSA-S, an LSTM sentence vector).
    model.word_representation = "words"
    # Beyond the paper: "none" (the bag of words), "bilstm" or "positions" give each word its
    # context before Eq. 1 (cmsa_tf/layers/contextual_words.py).
    model.word_context = "none"
    model.fusion_channels = 500
    # Table 3 (bottom): "gated" (Eq. 5, the paper), "single" (the first level only, res5; see the
    # module docstring), "ppm", "deconv", "convlstm" or "self_gated".
    model.fusion = "gated"
    return model


def train_config() -> ml_collections.ConfigDict:
    """The authors' optimisation recipe (docs/design.md, "Training recipe")."""
    return ml_collections.ConfigDict(
        dict(
            batch_size=1,
            steps=800_000,
            optimizer="adam",
            learning_rate=2.5e-4,
            end_learning_rate=1e-5,
            decay_power=0.9,
            # Beyond the paper: linear warm-up over this many steps before the decay (0: none).
            warmup_steps=0,
            weight_decay=5e-4,
            bias_lr_multiplier=2.0,
            # "default": decay every kernel (conv, dense, attention projections, LSTM), biases
            # at bias_lr_multiplier x the learning rate. "authors" (their train_op): decay only
            # the res5_projection and score kernels and the trainable backbone kernels, biases of
            # those two layers' gradients x bias_lr_multiplier (docs/design.md, "Training recipe").
            recipe="default",
            # None: the recipe's Adam epsilon (1e-7, Keras's default; "authors": 1e-8, TF1's).
            adam_epsilon=ml_collections.config_dict.placeholder(float),
            # "sum" over pixels, mean over the batch (the authors), or "mean" over everything.
            loss_reduction="sum",
            # Beyond the paper: "none" (Eq. 7 alone), "dice" or "lovasz" added to Eq. 7 with
            # region_loss_weight (cmsa_tf/losses.py).
            region_loss="none",
            region_loss_weight=1.0,
            # "" (float32), "bfloat16" or "float16" (with loss scaling): for GPUs.
            mixed_precision="",
            checkpoint_every=5000,
            keep_checkpoints=3,
            log_every=100,
            # Train steps per tf.function call (the loss reaches the host once per call).
            steps_per_loop=1,
            # XLA for the replica step (fixed shapes: keep data.length_buckets on).
            jit_compile=False,
            eval_every=0,
            seed=0,
        )
    )


def paper_config(
    dataset: str,
    split_by: str,
    *,
    eval_splits,
    tfrecord_dir: str,
    arg: str | None = None,
) -> ml_collections.ConfigDict:
    """A full paper-scale config for one REFER dataset; `arg` selects the attention form.

    The form is `config.model.attention.form` (there is no top-level copy of it). `arg="authors"`
    also applies `authors_config`.
    """
    form = attention_form(arg)
    config = ml_collections.ConfigDict()
    config.data = ml_collections.ConfigDict(
        dict(
            dataset=dataset,
            split_by=split_by,
            refer_root="data/refer",
            image_root="data/images",
            tfrecord_dir=tfrecord_dir,
            train_split="train",
            eval_splits=tuple(eval_splits),
            image_size=320,
            max_words=20,
            min_count=1,
            shuffle_buffer=1000,
            # Fixed example order given the seed (slower input; for tests and reproductions).
            deterministic=False,
            # "default" or "authors" (their skimage resize, uint8 quantisation, `> 0` training
            # masks; cmsa_tf/data/preprocess.py).
            preprocessing="default",
            # Beyond the paper: training flips that rewrite the words, e.g. ("hflip", "vflip")
            # (cmsa_tf/data/augment.py).
            augment=(),
            # Training batches group expressions by length: words cut to the smallest of these
            # bounds (and max_words) that holds them (cmsa_tf.data.pipeline.make_dataset);
            # None: every batch padded to max_words.
            length_buckets=(4, 8, 12, 16),
            # Beyond the paper: training batches of batch_size / k images with k expressions
            # each, the backbone run once per image (cmsa_tf/data/image_groups.py); 1: none.
            expressions_per_image=1,
        )
    )
    config.model = model_config(form)
    config.train = train_config()
    config.eval = ml_collections.ConfigDict(
        dict(
            batch_size=1,
            crf=True,
            threshold=0.5,
            # "exact": undo the resize-and-pad, probabilities >= threshold. "authors": their
            # main_cmsa.py test (cmsa_tf/evaluation/protocols.py; threshold not used).
            protocol="exact",
            # Evaluation during training (config.train.eval_every): TensorBoard images shown and
            # validation expressions scored.
            num_images=4,
            max_examples_during_training=500,
        )
    )
    return authors_config(config, enabled=parse_config_arg(arg) == "authors")


def authors_config(
    config: ml_collections.ConfigDict, enabled: bool = True
) -> ml_collections.ConfigDict:
    """Adds the options of the authors' released model, set to theirs when `enabled`.

    Every config gets `config.model.upsampling` ("half_pixel") and `config.data.tokenizer`
    ("default"). With `enabled` (the `:authors` config argument, on top of the official attention
    form) the whole model is the authors' code (docs/authors_model.md):
    - backbone padding "same" and BatchNorm epsilon 1e-3 (their DeepLab checkpoint's stem);
    - `model.upsampling = "tf1"`: the score map upsampled as TF1 `resize_bilinear`;
    - `data.tokenizer = "authors"`: their tokenizer and vocabulary file format;
    - their evaluation protocol, image preprocessing and training recipe
      (`eval.protocol`, `data.preprocessing`, `train.recipe`).
    """
    config.model.upsampling = "half_pixel"
    config.data.tokenizer = "default"
    if not enabled:
        return config
    config.model.backbone.padding = "same"
    config.model.backbone.batchnorm_epsilon = 1e-3
    config.model.upsampling = "tf1"
    config.data.tokenizer = "authors"
    config.eval.protocol = "authors"
    config.data.preprocessing = "authors"
    config.train.recipe = "authors"
    return config
