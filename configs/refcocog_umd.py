"""CMSA on refcocog (umd split), the paper's settings.

Usage: python -m cmsa_tf.train --config=configs/refcocog_umd.py --workdir=DIR
The config argument `official` switches to the authors' released-code form of the attention:
--config=configs/refcocog_umd.py:official
The config argument `authors` is the authors' released model as a whole (their attention form,
backbone stem, upsampling, tokenizer, evaluation protocol, preprocessing and training recipe;
docs/authors_model.md): --config=configs/refcocog_umd.py:authors
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
