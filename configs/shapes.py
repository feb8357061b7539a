"""CMSA on ShapesRef, the embedded synthetic benchmark: a small model that trains on 2 CPU cores.

Usage (what `make demo` runs):
  python -m cmsa_tf.data.shapes --output_dir=data/shapes_ref
  python -m cmsa_tf.data.build --refer_root=data/shapes_ref --dataset=shapes --split_by=shapes \
      --image_root=data/shapes_ref/images --output_dir=data/tfrecords/shapes
  python -m cmsa_tf.train --config=configs/shapes.py --workdir=workdir/shapes

Same architecture as the paper (multi-level CMSA + gated fusion), scaled down: ResNet-18 at a
quarter width and output stride 16, 160 px input, 64-D word embeddings, trained from scratch on 2
CPU cores (the README gives the measured training time). `:official` selects the authors' attention
form; `:long` the longer schedule (16,000 steps, flips that rewrite the words; under an hour).
"""

from cmsa_tf import configs

# The config arguments of this file beyond the attention forms of `configs.parse_config_arg`.
SCHEDULES = ("long",)


def get_config(arg=None):
    arg = (arg or "").strip()
    schedule = arg if arg in SCHEDULES else "demo"
    try:
        form = configs.parse_config_arg("" if schedule != "demo" else arg)
    except ValueError:
        raise ValueError(
            f"Unknown config argument {arg!r} for configs/shapes.py; expected one of "
            f"{configs.VALID_ARGS[1:] + SCHEDULES}."
        ) from None
    config = configs.paper_config(
        "shapes",
        "shapes",
        eval_splits=("val", "testA", "testB"),
        tfrecord_dir="data/tfrecords/shapes",
        arg=form,
    )
    config.data.refer_root = "data/shapes_ref"
    config.data.image_root = "data/shapes_ref/images"
    # 160 px, the images' own size: the stride-8 score map (20x20) caps val overall IoU at 0.87
    # for a perfect map, against 0.82 at 128 px and 0.73 at 96 px
    # (benchmarks/resolution_ceiling.py). Output stride 16 (res4 and res5 at 10x10, fused at
    # res3's 20x20) makes a step at 160 px cost what one at 128 px and stride 8 did, and learns
    # faster per step (docs/shapes_demo.md, "How the recipe was chosen").
    config.data.image_size = 160
    config.data.max_words = 10
    # A batch of 16 expressions is 4 images with 4 expressions each, the backbone run once per
    # image (cmsa_tf/data/image_groups.py): the step 1.4x faster, the learning curve within the
    # spread of ungrouped runs (docs/shapes_demo.md, "Timings and runs of `make demo`").
    config.data.expressions_per_image = 4

    model = config.model
    model.embedding_dim = 64
    model.backbone.depth = 18
    model.backbone.width = 16
    model.backbone.weights = None
    model.backbone.freeze_batchnorm = False
    model.backbone.output_stride = 16
    model.backbone.trainable_stages = ("conv1", "res2", "res3", "res4", "res5")
    model.attention.key_dims = (32, 32, 32) if form == "paper" else (32, 16, 16)
    if form != "paper":  # official, authors
        model.attention.reduce_dims = (None, 32, 32)
        model.res5_projection_dim = 64
    model.fusion_channels = 64

    train = config.train
    train.batch_size = 16
    train.steps = 2400
    train.learning_rate = 2e-3
    train.end_learning_rate = 1e-5
    train.weight_decay = 1e-5
    train.loss_reduction = "mean"
    # Beyond the paper: Eq. 7 plus a soft Dice term (cmsa_tf/losses.py; measured in the README's
    # ShapesRef section).
    train.region_loss = "dice"
    train.checkpoint_every = 400
    train.log_every = 50
    # The learning curve `make demo` prints (cmsa_tf.visualize.learning_curve).
    train.eval_every = 400

    config.eval.batch_size = 32
    config.eval.num_images = 4
    config.eval.max_examples_during_training = 300

    if schedule == "long":
        # The demo model for about 10 passes over the training expressions (6.7x the demo's
        # steps: 51 min of training on 2 idle AVX-512 CPU cores, 55 min with the evaluation of
        # all splits with and without CRF; docs/shapes_demo.md, "The longer schedule"), with
        # flips that rewrite the words (cmsa_tf/data/augment.py) since each is seen many times.
        config.data.augment = ("hflip", "vflip")
        train.steps = 16000
        train.checkpoint_every = 2000
        train.eval_every = 2000
        config.eval.max_examples_during_training = 600
    return config
