"""Shared by the data tests: synthetic images, masks and records, NumPy references of the
preprocessing."""

import io

import numpy as np
import tensorflow as tf
from PIL import Image

from cmsa_tf.data import schema

# (height, width) of the synthetic examples; example i has first word id i + 1.
SIZES = [(24, 32), (32, 24), (30, 30), (20, 36), (40, 28), (33, 17), (16, 16), (45, 60)]


def encode(array, fmt="PNG", **kwargs):
    """A uint8 array -> the bytes of an image file in `fmt` (PIL)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def blob(height, width, cy=0.5, cx=0.5, ry=0.3, rx=0.35):
    """A {0, 1} uint8 [height, width] ellipse centred at (cy, cx) with radii (ry, rx), relative."""
    yy, xx = np.mgrid[:height, :width]
    inside = ((yy + 0.5) / height - cy) ** 2 / ry**2 + ((xx + 0.5) / width - cx) ** 2 / rx**2
    return (inside <= 1.0).astype(np.uint8)


def record(image, mask, ids, index=0, image_bytes=None, fmt="png"):
    """A serialized `tf.train.Example` (schema.py); ids 1000 / 2000 / 3000 / 4000 + `index`."""
    height, width = mask.shape
    return schema.serialize_example(
        image_encoded=image_bytes if image_bytes is not None else encode(image),
        image_format=fmt,
        height=height,
        width=width,
        mask_png=encode(mask),
        expression=" ".join(f"w{i}" for i in ids),
        ids=ids,
        image_id=1000 + index,
        ref_id=2000 + index,
        ann_id=3000 + index,
        sentence_id=4000 + index,
    )


def write_records(path, records):
    """Serialized records -> one TFRecord file at `path`; returns the path as a str."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for serialized in records:
            writer.write(serialized)
    return str(path)


def examples():
    """8 (image, mask, ids) of the `SIZES`; example i has 1 + i % 4 words, the first i + 1."""
    rng = np.random.default_rng(0)
    out = []
    for i, (h, w) in enumerate(SIZES):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = blob(h, w, cy=0.4 + 0.02 * i, cx=0.5)
        ids = [i + 1] + list(range(50, 50 + (i % 4)))
        out.append((image, mask, ids))
    return out


# ----------------------------------------------------------------------------------------------
# NumPy references, written independently of cmsa_tf.data.preprocess.
# ----------------------------------------------------------------------------------------------


def np_geometry(height, width, size):
    scale = size / max(height, width)
    rh = max(1, int(np.round(height * scale)))
    rw = max(1, int(np.round(width * scale)))
    return rh, rw, (size - rh) // 2, (size - rw) // 2


def np_bilinear_axis(in_size, out_size):
    src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    lo = np.floor(src)
    frac = src - lo
    lo_i = np.clip(lo.astype(int), 0, in_size - 1)
    hi_i = np.clip(lo.astype(int) + 1, 0, in_size - 1)
    return lo_i, hi_i, frac


def np_resize_bilinear(array, out_h, out_w):
    array = array.astype(np.float64)
    lo, hi, f = np_bilinear_axis(array.shape[0], out_h)
    rows = array[lo] * (1 - f)[:, None] + array[hi] * f[:, None]
    lo, hi, f = np_bilinear_axis(array.shape[1], out_w)
    return rows[:, lo] * (1 - f)[None, :] + rows[:, hi] * f[None, :]


def np_resize_and_pad(array, size):
    rh, rw, top, left = np_geometry(*array.shape, size)
    out = np.zeros((size, size))
    out[top : top + rh, left : left + rw] = np_resize_bilinear(array, rh, rw)
    return out


def iou(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()
