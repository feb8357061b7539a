"""Drawing: shape outlines as masks, textured backgrounds, painted objects, JPEG encoding."""

import io
import math

import numpy as np
from PIL import Image, ImageDraw

from cmsa_tf.data.shapes.constants import COLORS, SHAPES

JPEG_QUALITY = 92

# Farthest point of each shape from its centre, in units of the scale.
EXTENT = {
    "circle": 1.0,
    "square": 0.89 * math.sqrt(2.0),
    "triangle": 1.5,
    "star": 1.4,
    "cross": math.hypot(1.2, 0.42),
}


def _shape_points(shape, x, y, scale, angle):
    """Polygon vertices (list of (x, y)) of a shape; None for a circle."""
    if shape == "circle":
        return None
    if shape == "square":
        radius = 0.89 * scale * math.sqrt(2.0)
        polar = [(radius, angle + math.pi / 4 + k * math.pi / 2) for k in range(4)]
    elif shape == "triangle":
        polar = [(1.5 * scale, angle - math.pi / 2 + k * 2 * math.pi / 3) for k in range(3)]
    elif shape == "star":
        polar = [
            (1.4 * scale if k % 2 == 0 else 0.77 * scale, angle - math.pi / 2 + k * math.pi / 5)
            for k in range(10)
        ]
    elif shape == "cross":
        arm, half_width = 1.2 * scale, 0.42 * scale
        corners = [(half_width, arm), (half_width, half_width), (arm, half_width)]
        points = []
        for quarter in range(4):  # the three corners of one arm, turned by 0, -90, -180, -270 deg.
            c, s = math.cos(-quarter * math.pi / 2), math.sin(-quarter * math.pi / 2)
            points.extend((px * c - py * s, px * s + py * c) for px, py in corners)
        polar = [(math.hypot(px, py), math.atan2(py, px) + angle) for px, py in points]
    else:
        raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")
    return [(x + r * math.cos(a), y + r * math.sin(a)) for r, a in polar]


def shape_mask(obj, image_size):
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    points = _shape_points(obj["shape"], obj["x"], obj["y"], obj["scale"], obj["angle"])
    if points is None:
        r = obj["scale"]
        draw.ellipse([obj["x"] - r, obj["y"] - r, obj["x"] + r, obj["y"] + r], fill=1)
    else:
        draw.polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)  # [S, S]


def _muted_color(rng):
    gray = rng.uniform(70.0, 200.0)
    return gray + rng.uniform(-18.0, 18.0, size=3)


def background(rng, image_size):
    """A textured, low-saturation background, float [S, S, 3] in about [0, 255]."""
    s = image_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s  # [S, S] each
    c0 = _muted_color(rng)
    c1 = np.clip(c0 + rng.uniform(-45.0, 45.0) + rng.uniform(-12.0, 12.0, size=3), 40.0, 230.0)
    texture = int(rng.integers(4))
    angle = rng.uniform(0.0, 2.0 * math.pi)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    if texture == 0:  # linear gradient
        t = (along - along.min()) / max(float(along.max() - along.min()), 1e-6)
    elif texture == 1:  # soft stripes
        period = rng.uniform(0.06, 0.2)
        t = 0.5 + 0.5 * np.sin(2.0 * math.pi * along / period + rng.uniform(0.0, 2.0 * math.pi))
    elif texture == 2:  # checkers
        cells = int(rng.integers(4, 11))
        t = ((np.floor(xx * cells) + np.floor(yy * cells)) % 2).astype(np.float32)
    else:  # smooth blotches: a coarse random grid upsampled bicubically
        grid = int(rng.integers(3, 7))
        coarse = (rng.random((grid, grid)) * 255.0).astype(np.uint8)
        t = np.asarray(Image.fromarray(coarse).resize((s, s), Image.BICUBIC), np.float32) / 255.0
    image = c0 + t[:, :, None] * (c1 - c0)  # [S, S, 3]
    return image + rng.normal(0.0, rng.uniform(2.0, 7.0), size=image.shape)


def paint_object(image, mask, obj, rng):
    """Paints the visible pixels of `obj` in its colour, with a slight shading and noise."""
    base = np.asarray(COLORS[obj["color"]], np.float32) + rng.uniform(-14.0, 14.0, size=3)
    yy, xx = np.nonzero(mask)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    shade = 1.0 + 0.12 * ((xx - obj["x"]) * math.cos(angle) + (yy - obj["y"]) * math.sin(angle)) / (
        EXTENT[obj["shape"]] * obj["scale"]
    )
    colors = base[None, :] * shade[:, None] + rng.normal(0.0, 4.0, size=(len(yy), 3))
    image[yy, xx] = colors


def encode_jpeg(image):
    """uint8 [S, S, 3] -> JPEG bytes (quality `JPEG_QUALITY`, no chroma subsampling)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()
