"""The ShapesRef vocabulary shared by its modules: shapes, colours, sizes, kinds, splits."""

DATASET = "shapes"
SPLIT_BY = "shapes"

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLORS = {
    "red": (205, 35, 35),
    "green": (30, 160, 55),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 25),
    "purple": (145, 50, 180),
}
SIZES = ("big", "small")
KINDS = ("attribute", "location", "ordinal", "relation")
SPLITS = ("train", "val", "testA", "testB")
IMAGE_SPLITS = ("train", "val", "test")
DIRECTIONS = ("left", "right", "top", "bottom")
RELATIONS = ("left", "right", "above", "below")
CATEGORY_IDS = {shape: index + 1 for index, shape in enumerate(SHAPES)}

MAX_WORDS = 10  # configs/shapes.py keeps 10 words; no expression is longer.
