r"""Evaluates a trained CMSA model, with and without DenseCRF.

  python -m cmsa_tf.evaluate --config=configs/refcoco_unc.py --workdir=workdir/refcoco_unc \
      --split=val --crf

Predictions become masks at each original image size by `config.eval.protocol`
(`cmsa_tf.evaluation.protocols`: "exact", the default, crops the pad, resizes and thresholds at
0.5; "authors" is the map-back of the authors' code) and are compared with the original mask:
overall IoU (sum I / sum U, Table 1 of the paper), mean IoU and prec@0.5..0.9. `--crf` adds
the same metrics after DenseCRF refinement. Results (with the protocol) go to
`<workdir>/eval/<split>.json` and `.md`; `--num_overlays` writes prediction overlays and their
Fig. 5 heat maps there too.
Uses the latest checkpoint of the workdir unless `--checkpoint` names one. The library is
`cmsa_tf.evaluation.evaluator`.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from cmsa_tf.evaluation.evaluator import evaluate_split, write_results
from cmsa_tf.models.restore import build_and_restore

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Training directory (checkpoints).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint prefix; default: the latest.")
_SPLIT = flags.DEFINE_list("split", ["val"], "Split(s) to evaluate, e.g. val,testA,testB.")
_CRF = flags.DEFINE_boolean("crf", False, "Also evaluate after DenseCRF refinement.")
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", None, "Evaluate only the first N.")
_NUM_OVERLAYS = flags.DEFINE_integer(
    "num_overlays", 0, "Write this many overlay PNGs, each with its heat map."
)
_CRF_WORKERS = flags.DEFINE_integer("crf_workers", 2, "Processes for DenseCRF.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Default: <workdir>/eval.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    workdir, checkpoint = _WORKDIR.value, _CHECKPOINT.value
    if config is None or not (workdir or checkpoint):
        raise app.UsageError("--config and --workdir (or --checkpoint) are required.")
    model, checkpoint, step = build_and_restore(config, workdir=workdir, checkpoint=checkpoint)
    logging.info("Evaluating %s (step %d).", checkpoint, step)
    output_dir = _OUTPUT_DIR.value or os.path.join(
        workdir or os.path.dirname(os.path.dirname(checkpoint)), "eval"
    )
    extra = {
        "checkpoint": checkpoint,
        "step": step,
        "protocol": config.eval.get("protocol", "exact"),
    }
    all_results = {}
    for split in _SPLIT.value:
        results = evaluate_split(
            model,
            config,
            split,
            crf=_CRF.value,
            max_examples=_MAX_EXAMPLES.value,
            crf_workers=_CRF_WORKERS.value,
            num_overlays=_NUM_OVERLAYS.value,
            overlay_dir=os.path.join(output_dir, "overlays"),
        )
        print(write_results(results, output_dir, split, extra=extra))
        all_results.update(results)
    if len(_SPLIT.value) > 1:
        print("\n" + write_results(all_results, output_dir, "summary", extra=extra))


if __name__ == "__main__":
    app.run(main)
