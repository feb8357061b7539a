"""CMSA on refcocog (umd split), the paper's settings.

Usage: python -m cmsa_tf.train --config=configs/refcocog_umd.py --workdir=DIR
The config argument `official` switches to the authors' released-code form of the attention:
--config=configs/refcocog_umd.py:official
"""

from cmsa_tf import configs


def get_config(arg=None):
    return configs.paper_config(
        "refcocog",
        "umd",
        eval_splits=("val", "test"),
        tfrecord_dir="data/tfrecords/refcocog_umd",
        arg=arg,
    )
