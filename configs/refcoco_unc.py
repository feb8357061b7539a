"""CMSA on refcoco (unc split), the paper's settings.

Usage: python -m cmsa_tf.train --config=configs/refcoco_unc.py --workdir=DIR
The config argument `official` switches to the authors' released-code form of the attention:
--config=configs/refcoco_unc.py:official
The config argument `authors` is the authors' released model as a whole (their attention form,
backbone stem, upsampling, tokenizer, evaluation protocol, preprocessing and training recipe;
docs/authors_model.md): --config=configs/refcoco_unc.py:authors
"""

from cmsa_tf import configs


def get_config(arg=None):
    return configs.paper_config(
        "refcoco",
        "unc",
        eval_splits=("val", "testA", "testB"),
        tfrecord_dir="data/tfrecords/refcoco_unc",
        arg=arg,
    )
