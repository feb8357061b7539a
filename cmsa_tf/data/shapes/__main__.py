"""Command line of the ShapesRef generator: `python -m cmsa_tf.data.shapes --output_dir=...`.

Calls `cmsa_tf.data.shapes.generate_shapes_ref` with the flags and prints its summary.
"""

import json
import time

from absl import app, flags

from cmsa_tf.data.shapes import generate_shapes_ref

flags.DEFINE_string("output_dir", None, "Folder for images/ and shapes/.", required=True)
flags.DEFINE_integer("num_train_images", 2600, "Training images.")
flags.DEFINE_integer("num_val_images", 170, "Validation images.")
flags.DEFINE_integer("num_test_images", 400, "Test images (testA and testB).")
flags.DEFINE_integer("image_size", 160, "Image side in pixels.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_integer("num_workers", 2, "Worker processes.")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    start = time.time()
    summary = generate_shapes_ref(
        FLAGS.output_dir,
        num_train_images=FLAGS.num_train_images,
        num_val_images=FLAGS.num_val_images,
        num_test_images=FLAGS.num_test_images,
        image_size=FLAGS.image_size,
        seed=FLAGS.seed,
        num_workers=FLAGS.num_workers,
        progress=True,
    )
    print(json.dumps(summary, indent=2))
    print(f"ShapesRef written to {FLAGS.output_dir} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    app.run(main)
