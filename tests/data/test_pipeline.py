"""Tests of cmsa_tf/data/pipeline.py: Decoder, Parser, word padding, datasets."""

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cmsa_tf.data import map_back, pipeline, preprocess, schema
from tests.data.synthetic import blob as _blob
from tests.data.synthetic import encode as _encode
from tests.data.synthetic import examples as _examples
from tests.data.synthetic import iou as _iou
from tests.data.synthetic import np_resize_and_pad as _np_resize_and_pad
from tests.data.synthetic import record as _record
from tests.data.synthetic import write_records as _write

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MEAN_BGR = np.array([104.00699, 116.66877, 122.67891], np.float32)
SIZE = 32
MAX_WORDS = 6


def _first_ids(dataset, num_batches=None):
    ids = []
    for i, batch in enumerate(dataset):
        if num_batches is not None and i >= num_batches:
            break
        ids.extend(batch["words"][:, 0].numpy().tolist())
    return ids


# ---------------------------------------------------------------------------------------------
# Decoding and words.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode,fmt", [("L", "PNG"), ("L", "JPEG"), ("RGBA", "PNG"), ("RGB", "GIF"), ("RGB", "BMP")]
)
def test_decode_gives_three_channels(mode, fmt):
    rng = np.random.default_rng(5)
    if mode == "L":
        pixels = np.full((12, 16), 77, np.uint8)
    elif mode == "RGBA":
        pixels = rng.integers(0, 256, (12, 16, 4), dtype=np.uint8)
    else:
        pixels = np.zeros((12, 16, 3), np.uint8)
        pixels[..., 0], pixels[..., 1], pixels[..., 2] = 255, 0, 0  # pure red survives GIF
    mask = _blob(12, 16)
    record = _record(None, mask, [1, 2], image_bytes=_encode(pixels, fmt), fmt=fmt.lower())
    decoded = pipeline.Decoder().decode(tf.constant(record))
    image = decoded["image"].numpy()
    assert image.shape == (12, 16, 3) and image.dtype == np.uint8
    if mode == "L":
        assert np.all(np.abs(image.astype(int) - 77) <= 1)
    elif mode == "RGBA":
        np.testing.assert_array_equal(image, pixels[..., :3])
    else:
        np.testing.assert_array_equal(image, pixels)
    np.testing.assert_array_equal(decoded["mask"].numpy()[..., 0], mask)


@pytest.mark.parametrize("length", [0, 3, 6, 25])
def test_words_truncated_and_padded(length):
    ids = list(range(1, length + 1))
    words = pipeline.pad_words(tf.constant(ids, tf.int64), 6).numpy()
    assert words.dtype == np.int32 and words.shape == (6,)
    expected = (ids + [0] * 6)[:6]
    assert words.tolist() == expected


def test_bad_word_slots_raise_value_error():
    with pytest.raises(ValueError, match="max_words"):
        pipeline.pad_words([1, 2], 0)


# ---------------------------------------------------------------------------------------------
# Datasets.
# ---------------------------------------------------------------------------------------------


def test_element_keys_shapes_and_dtypes(records):
    _, files, _ = records
    expected = {
        "image": (tf.float32, (2, SIZE, SIZE, 3)),
        "words": (tf.int32, (2, MAX_WORDS)),
        "mask": (tf.float32, (2, SIZE, SIZE, 1)),
        "orig_height": (tf.int32, (2,)),
        "orig_width": (tf.int32, (2,)),
        "scale": (tf.float32, (2,)),
        "pad_top": (tf.int32, (2,)),
        "pad_left": (tf.int32, (2,)),
        "resized_height": (tf.int32, (2,)),
        "resized_width": (tf.int32, (2,)),
    }
    dataset = pipeline.make_dataset(
        files, image_size=SIZE, max_words=MAX_WORDS, batch_size=2, training=True, deterministic=True
    )
    # Training drops the remainder, so the batch dimension is static.
    assert {k: (s.dtype, tuple(s.shape)) for k, s in dataset.element_spec.items()} == expected
    batch = next(iter(dataset))
    assert {k: (v.dtype, tuple(v.shape)) for k, v in batch.items()} == expected

    extra = {
        "image_bytes": tf.string,
        "orig_mask_png": tf.string,
        "expression": tf.string,
        "image_id": tf.int64,
        "ref_id": tf.int64,
        "ann_id": tf.int64,
        "sentence_id": tf.int64,
    }
    dataset = pipeline.make_dataset(
        files,
        image_size=SIZE,
        max_words=MAX_WORDS,
        batch_size=3,
        training=False,
        include_original=True,
    )
    batches = list(dataset)
    assert [int(b["words"].shape[0]) for b in batches] == [3, 3, 2]  # evaluation keeps the rest
    for key, dtype in extra.items():
        assert batches[0][key].dtype == dtype and batches[0][key].shape == (3,)
    assert set(batches[0]) == set(expected) | set(extra)


def test_evaluation_order_values_and_round_trip(records):
    _, files, examples = records
    dataset = pipeline.make_dataset(
        files,
        image_size=SIZE,
        max_words=MAX_WORDS,
        batch_size=1,
        training=False,
        include_original=True,
    )
    elements = [{k: v[0] for k, v in batch.items()} for batch in dataset]
    # Files are interleaved round-robin: 0, 4, 1, 5, ...
    order = [int(e["words"][0]) - 1 for e in elements]
    assert order == [0, 4, 1, 5, 2, 6, 3, 7]
    for element in elements:
        i = int(element["words"][0]) - 1
        image, mask, ids = examples[i]
        h, w = mask.shape
        assert int(element["ref_id"]) == 2000 + i and int(element["sentence_id"]) == 4000 + i
        assert (int(element["orig_height"]), int(element["orig_width"])) == (h, w)
        assert element["words"].numpy().tolist() == (ids + [0] * MAX_WORDS)[:MAX_WORDS]
        # The mask equals an independent NumPy resize-and-pad (bilinear, >= 0.5) of the original,
        # except where the reference sits on the 0.5 threshold within float error.
        reference = _np_resize_and_pad(mask, SIZE)
        got = element["mask"].numpy()[..., 0]
        differ = got != (reference >= 0.5)
        assert np.all(np.abs(reference[differ] - 0.5) < 1e-4)
        assert set(np.unique(got)) <= {0.0, 1.0}
        # The image is the normalised NumPy resize-and-pad of the original.
        rgb = np.stack([_np_resize_and_pad(image[..., c], SIZE) for c in range(3)], -1)
        np.testing.assert_allclose(element["image"].numpy(), rgb[..., ::-1] - MEAN_BGR, atol=2e-3)
        # The original bytes come back, and the info fields map the mask back onto them.
        original = np.array(Image.open(io.BytesIO(element["orig_mask_png"].numpy())))
        np.testing.assert_array_equal(original, mask)
        np.testing.assert_array_equal(
            np.array(Image.open(io.BytesIO(element["image_bytes"].numpy()))), image
        )
        info = {k: element[k] for k in preprocess.INFO_KEYS}
        restored = preprocess.binarize(map_back.unpad_and_resize(element["mask"], info)).numpy()
        assert restored.shape == (h, w, 1)
        assert _iou(restored[..., 0], original) > 0.8  # tiny masks (16-60 px) at a 32 px input


def test_deterministic_mode_repeats_batches(records):
    _, files, _ = records

    def first_ids(seed):
        dataset = pipeline.make_dataset(
            files,
            image_size=SIZE,
            max_words=MAX_WORDS,
            batch_size=2,
            training=True,
            deterministic=True,
            seed=seed,
            shuffle_buffer=8,
        )
        batches = list(dataset.take(8))  # two epochs: training repeats
        return [b["words"][:, 0].numpy().tolist() for b in batches], batches

    ids_a, batches_a = first_ids(7)
    ids_b, batches_b = first_ids(7)
    assert ids_a == ids_b
    for a, b in zip(batches_a, batches_b):
        for key in a:
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    flat = sum(ids_a, [])
    assert sorted(flat[:8]) == list(range(1, 9)) and sorted(flat[8:]) == list(range(1, 9))
    # Shuffled: the order differs from the file order and between seeds.
    ids_c, _ = first_ids(8)
    evaluation = _first_ids(
        pipeline.make_dataset(
            files, image_size=SIZE, max_words=MAX_WORDS, batch_size=2, training=False
        )
    )
    assert flat[:8] != evaluation
    assert ids_c != ids_a


def test_input_context_shards_and_batches_per_replica(records):
    _, files, _ = records
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=4
        )
        dataset = pipeline.make_dataset(
            files,
            image_size=SIZE,
            max_words=MAX_WORDS,
            batch_size=4,
            training=False,
            input_context=context,
        )
        batches = list(dataset)
        assert all(int(b["words"].shape[0]) == 1 for b in batches)  # 4 replicas -> 1 each
        seen.append(set(_first_ids(batches)))
    assert seen[0].isdisjoint(seen[1])
    assert seen[0] | seen[1] == set(range(1, 9))
    # One file, two pipelines: records are sharded instead.
    context = tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2
    )
    one_file = pipeline.make_dataset(
        files[0],
        image_size=SIZE,
        max_words=MAX_WORDS,
        batch_size=2,
        training=False,
        input_context=context,
    )
    assert _first_ids(one_file) == [2, 4]


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus(records):
    _, files, _ = records
    script = textwrap.dedent(
        f"""
        import json
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
        from cmsa_tf.data import pipeline
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        dataset = strategy.distribute_datasets_from_function(
            lambda context: pipeline.make_dataset(
                {files!r}, image_size={SIZE}, max_words={MAX_WORDS}, batch_size=4,
                training=False, input_context=context))

        @tf.function
        def step(batch):
            def replica_fn(inputs):
                return inputs["words"][:, 0], tf.reduce_sum(inputs["mask"], axis=[1, 2, 3])
            return strategy.run(replica_fn, args=(batch,))

        steps = []
        for batch in dataset:
            ids, areas = step(batch)
            steps.append([t.numpy().tolist() for t in strategy.experimental_local_results(ids)])
        print("RESULT " + json.dumps({{"replicas": strategy.num_replicas_in_sync, "steps": steps}}))
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["replicas"] == 2
    assert len(result["steps"]) == 2
    for step in result["steps"]:
        assert len(step) == 2 and all(len(ids) == 2 for ids in step)  # per-replica batch 2
    all_ids = [i for step in result["steps"] for ids in step for i in ids]
    assert sorted(all_ids) == list(range(1, 9))


def test_corrupt_image_raises_or_is_skipped(tmp_path):
    image, mask, ids = _examples()[0]
    good = _record(image, mask, ids, 0)
    bad = _record(None, mask, [9], 1, image_bytes=b"this is not an image")
    truncated = _record(None, mask, [9], 2, image_bytes=_encode(image)[:40])
    path = _write(tmp_path / "corrupt.tfrecord", [good, bad, good, truncated, good])
    dataset = pipeline.make_dataset(
        path, image_size=SIZE, max_words=MAX_WORDS, batch_size=1, training=False
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"ref/id 2001.*image/encoded is not a JPEG"
    ):
        list(dataset)
    skipped = pipeline.make_dataset(
        path, image_size=SIZE, max_words=MAX_WORDS, batch_size=1, training=False, skip_corrupt=True
    )
    assert _first_ids(skipped) == [ids[0]] * 3


def test_inconsistent_record_sizes_raise(tmp_path):
    image, mask, ids = _examples()[0]
    wrong_mask = schema.serialize_example(
        image_encoded=_encode(image),
        image_format="png",
        height=24,
        width=32,
        mask_png=_encode(mask[:10]),
        expression="x",
        ids=ids,
        ref_id=7,
    )
    wrong_size = schema.serialize_example(
        image_encoded=_encode(image),
        image_format="png",
        height=99,
        width=32,
        mask_png=_encode(mask),
        expression="x",
        ids=ids,
        ref_id=8,
    )
    decoder = pipeline.Decoder()
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask/encoded is 10x32"):
        decoder.decode(tf.constant(wrong_mask))
    with pytest.raises(tf.errors.InvalidArgumentError, match="image/height, image/width say 99x32"):
        decoder.decode(tf.constant(wrong_size))


def test_dataset_from_manifest(records, tmp_path):
    directory, files, _ = records
    manifest = {
        "splits": {"train": {"files": [os.path.basename(f) for f in files], "count": 8}},
        "vocab_file": "vocab.txt",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    dataset = pipeline.dataset_from_manifest(
        str(directory), "train", image_size=SIZE, max_words=MAX_WORDS, batch_size=4, training=False
    )
    assert sorted(_first_ids(dataset)) == list(range(1, 9))
    same = pipeline.dataset_from_manifest(
        str(directory / "manifest.json"),
        "train",
        image_size=SIZE,
        max_words=MAX_WORDS,
        batch_size=4,
        training=False,
    )
    assert _first_ids(same) == _first_ids(dataset)
    with pytest.raises(ValueError, match=r"Split 'val' is not in the manifest.*\['train'\]"):
        pipeline.dataset_from_manifest(str(directory), "val", batch_size=1, training=False)
    with pytest.raises(ValueError, match="No TFRecord manifest"):
        pipeline.dataset_from_manifest(str(tmp_path), "train", batch_size=1, training=False)


def test_make_dataset_bad_arguments(records, tmp_path):
    _, files, _ = records
    with pytest.raises(ValueError, match="No TFRecord files match"):
        pipeline.make_dataset(str(tmp_path / "*.tfrecord"), batch_size=1, training=False)
    with pytest.raises(ValueError, match="batch_size"):
        pipeline.make_dataset(files, batch_size=0, training=False)
    with pytest.raises(ValueError, match="repeat"):
        pipeline.make_dataset(files, batch_size=1, training=False, repeat=0)
    with pytest.raises(ValueError, match="max_words"):
        pipeline.make_dataset(files, batch_size=1, training=False, max_words=0)


def test_parser_takes_the_preprocessing_option():
    rng = np.random.default_rng(5)
    decoded = {
        "image": tf.constant(rng.integers(0, 256, (19, 30, 3), dtype=np.uint8)),
        "mask": tf.constant((rng.uniform(size=(19, 30, 1)) > 0.7).astype(np.uint8)),
        "ids": tf.constant([3, 4], tf.int64),
    }
    out = pipeline.Parser(image_size=16, max_words=4, preprocessing="authors")(decoded)
    image, _ = preprocess.preprocess_image(decoded["image"], 16, preprocessing="authors")
    mask, _ = preprocess.resize_and_pad_mask(decoded["mask"], 16, preprocessing="authors")
    np.testing.assert_array_equal(out["image"].numpy(), image.numpy())
    np.testing.assert_array_equal(out["mask"].numpy(), mask.numpy())
    default = pipeline.Parser(image_size=16, max_words=4)(decoded)
    assert not np.array_equal(default["mask"].numpy(), out["mask"].numpy())
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        pipeline.Parser(preprocessing="skimage")
