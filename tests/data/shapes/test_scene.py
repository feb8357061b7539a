"""Tests of cmsa_tf/data/shapes/scene.py: occlusion and same-shape distractors."""

import numpy as np

from cmsa_tf.data import shapes


def test_scene_occlusion_and_distractors():
    rng = np.random.default_rng(5)
    for _ in range(30):
        scene = shapes.generate_scene(rng, 96)
        objects, visible, full = scene["objects"], scene["masks"], scene["full_masks"]
        assert shapes.MIN_OBJECTS <= len(objects) <= shapes.MAX_OBJECTS
        assert scene["image"].shape == (96, 96, 3) and scene["image"].dtype == np.uint8
        shape_counts = [sum(o["shape"] == s for o in objects) for s in shapes.SHAPES]
        assert max(shape_counts) >= 2
        for i in range(len(objects)):
            above = full[i + 1 :].any(axis=0) if i + 1 < len(objects) else np.zeros_like(full[i])
            np.testing.assert_array_equal(visible[i], full[i] & ~above)
            assert visible[i].sum() >= shapes.MIN_VISIBLE_FRACTION * full[i].sum() > 0
