"""The paper's ablations (Tables 2 and 3): every variant trained with one budget, seeds, splits.

  python -m cmsa_tf.experiments.ablation --config=configs/shapes.py --variants=all \
      --workdir=workdir/ablation --seeds=0,1,2 [--steps=2000] [--splits=val,testA,testB] [--crf]

`variants` (the registry and each variant's three config fields), `runner` (train and evaluate
every variant / seed, resuming), `report` (statistics over seeds, the paper's-ordering check,
markdown), `plot` (the chart); docs/ablations.md describes the variants and the command.

Like the paper, the attention (Table 2) and word-representation (Table 3, top) ablations use res5
alone (`fusion="single"`); the fusion ablation (Table 3, bottom) uses all three levels.
"""

from cmsa_tf.experiments.ablation.plot import plot
from cmsa_tf.experiments.ablation.report import (
    METRICS,
    check_paper_ordering,
    ordering_markdown,
    summarize,
    to_markdown,
)
from cmsa_tf.experiments.ablation.runner import (
    RUN_RESULTS,
    AblationInterrupted,
    result_keys,
    run_ablation,
    run_variant,
)
from cmsa_tf.experiments.ablation.variants import (
    GROUP_TITLES,
    GROUPS,
    PAPER_BEST,
    VARIANTS,
    Variant,
    check_config,
    resolve_variants,
    variant_config,
)

__all__ = [
    "GROUPS",
    "GROUP_TITLES",
    "METRICS",
    "PAPER_BEST",
    "RUN_RESULTS",
    "VARIANTS",
    "AblationInterrupted",
    "Variant",
    "check_config",
    "check_paper_ordering",
    "ordering_markdown",
    "plot",
    "result_keys",
    "resolve_variants",
    "run_ablation",
    "run_variant",
    "summarize",
    "to_markdown",
    "variant_config",
]
