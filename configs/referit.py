"""CMSA on ReferIt (refclef, berkeley split: train / val / test as in the ReferItGame benchmark that
Table 1 reports on), the paper's settings.

Usage: python -m cmsa_tf.train --config=configs/referit.py --workdir=DIR
The config argument `official` switches to the authors' released-code form of the attention:
--config=configs/referit.py:official
The config argument `authors` is the authors' released model as a whole (their attention form,
backbone stem, upsampling, tokenizer, evaluation protocol, preprocessing and training recipe;
docs/authors_model.md): --config=configs/referit.py:authors
"""

from cmsa_tf import configs


def get_config(arg=None):
    return configs.paper_config(
        "refclef",
        "berkeley",
        eval_splits=("val", "test"),
        tfrecord_dir="data/tfrecords/refclef_berkeley",
        arg=arg,
    )
