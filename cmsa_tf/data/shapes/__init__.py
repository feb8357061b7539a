"""ShapesRef: a procedurally generated referring-segmentation benchmark in REFER format.

Each image shows 2-6 flat shapes (circle, square, triangle, star, cross) in 5 colours and 2 sizes
on a textured background (gradient, stripes, checkers or blotches, plus pixel noise). Later shapes
partially occlude earlier ones, but every object keeps at least 60% of its area visible, and every
image holds at least two objects of one shape (same-category distractors, as in RefCOCO).

Expressions come in four kinds:

- `attribute`: "the big red circle", "blue star".
- `location` (absolute, image halves): "triangle on the left", "top square",
  "the bottom right circle".
- `ordinal`: "second circle from the right", "leftmost square", "the first star from the top".
- `relation`: "the square left of the blue star", "circle above the green triangle".

Geometry. An object's position is the centre (x, y) it was drawn around (pixels, y down), and
`m = margin_fraction * image_size` is a tolerance. Every predicate has a strict and a lenient
reading, the strict one implying the plain one (margin 0), which implies the lenient one:

- in the left half: strict `x <= S/2 - m`, lenient `x < S/2 + m` (right, top, bottom alike);
- `a` left of `b`: strict `x_b - x_a >= max(m, |y_b - y_a|)` (clearly left and more to the side
  than above or below), lenient `x_a < x_b + m` (not clearly right); above, below, right alike;
- rank `k` from the left among candidates: with `lo` the number of other candidates clearly
  before it (`x_o <= x - m`) and `hi` those possibly before it (`x_o < x + m`), strict
  `lo == hi == k - 1`, lenient `lo <= k - 1 <= hi`.

`matching_objects` is the semantic checker: given a scene's objects and an expression spec it
returns the indices of the objects the expression can refer to under either reading. The
generator keeps an expression only if the lenient reading matches exactly the target and the
strict reading matches it too, so any reading in between (the plain one, or the plain one after
moving every centre by less than m/2) names exactly that object. Location, ordinal and relation
expressions are generated only when at least two objects fit the target's description, so the
spatial part is needed.

Files written (a REFER root; images under `<output_dir>/images`):

    <output_dir>/images/shapes_<split>_<index>.jpg
    <output_dir>/shapes/instances.json     COCO format, exact RLE masks of the visible pixels,
                                           each `segmentation` a list of one RLE dict (the
                                           stock REFER toolkit's `getMask` layout)
    <output_dir>/shapes/refs(shapes).p     pickle protocol 2, plain dicts / lists / str / int
    <output_dir>/shapes/scenes.json        objects (shape, colour, size, centre) and expression
                                           specs, for inspection and tests
    <output_dir>/shapes/summary.json       counts per split and kind

Splits are by image: train and val images give train and val refs; test images give `testA`
refs (attribute expressions) and `testB` refs (location, ordinal and relation expressions).
Everything is deterministic from the seed; image `i` of a split uses its own seed, so the files
do not depend on the number of workers.

Usage:
    python -m cmsa_tf.data.shapes --output_dir=data/shapes_ref

Modules: `constants` (shapes, colours, kinds, splits), `checker` (`matching_objects`,
`is_unambiguous`), `language` (`describe`, choosing expressions), `render` (drawing, JPEG),
`scene` (`generate_scene`), `writer` (`generate_shapes_ref`), `__main__` (the command line).
"""

from cmsa_tf.data.shapes.checker import is_unambiguous, matching_objects
from cmsa_tf.data.shapes.constants import (
    CATEGORY_IDS,
    COLORS,
    DATASET,
    DIRECTIONS,
    IMAGE_SPLITS,
    KINDS,
    MAX_WORDS,
    RELATIONS,
    SHAPES,
    SIZES,
    SPLIT_BY,
    SPLITS,
)
from cmsa_tf.data.shapes.language import MAX_RANK, describe
from cmsa_tf.data.shapes.render import JPEG_QUALITY
from cmsa_tf.data.shapes.scene import (
    MAX_OBJECTS,
    MIN_OBJECTS,
    MIN_VISIBLE_FRACTION,
    generate_scene,
)
from cmsa_tf.data.shapes.writer import generate_shapes_ref

__all__ = [
    "CATEGORY_IDS",
    "COLORS",
    "DATASET",
    "DIRECTIONS",
    "IMAGE_SPLITS",
    "JPEG_QUALITY",
    "KINDS",
    "MAX_OBJECTS",
    "MAX_RANK",
    "MAX_WORDS",
    "MIN_OBJECTS",
    "MIN_VISIBLE_FRACTION",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "SPLIT_BY",
    "describe",
    "generate_scene",
    "generate_shapes_ref",
    "is_unambiguous",
    "matching_objects",
]
