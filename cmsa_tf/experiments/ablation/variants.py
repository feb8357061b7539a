"""The ablation variants of Tables 2 and 3: the registry, groups, and each variant's config.

Each variant is a config-level description: the three model fields it sets
(`model.attention.variant`, `model.word_representation`, `model.fusion`); see docs/design.md,
"Ablation variants", and docs/ablations.md.
"""

import collections
from collections.abc import Sequence

import ml_collections

Variant = collections.namedtuple(
    "Variant", ["label", "attention", "word_representation", "fusion", "paper_iou"]
)
Variant.__doc__ = (
    "One ablation: its table label, the three config values it sets, and the overall IoU the "
    "paper reports for it (UNC val, with DenseCRF)."
)

VARIANTS = {
    # Table 2: attention methods, res5 only.
    "no_attention": Variant("No attention", "none", "words", "single", 45.63),
    "word_attention": Variant("Word attention", "word", "words", "single", 47.01),
    "pixel_attention": Variant("Pixel attention", "pixel", "words", "single", 47.84),
    "word_pixel_pair_attention": Variant(
        "Word-pixel pair attention", "word_pixel_pair", "words", "single", 47.57
    ),
    # Table 2's "Cross-modal self-attention" row and Table 3's CMSA-W: the same model.
    "cmsa_w": Variant(
        "CMSA-W (cross-modal self-attention, res5)", "cmsa", "words", "single", 50.12
    ),
    # Table 3 (top): the sentence as one LSTM vector.
    "cmsa_s": Variant("CMSA-S (LSTM sentence vector, res5)", "cmsa", "sentence", "single", 48.53),
    # Table 3 (bottom): multi-level fusion methods over res5, res4, res3.
    "ppm": Variant("CMSA+PPM", "cmsa", "words", "ppm", 53.54),
    "deconv": Variant("CMSA+Deconv", "cmsa", "words", "deconv", 54.18),
    "convlstm": Variant("CMSA+ConvLSTM", "cmsa", "words", "convlstm", 56.56),
    "self_gated": Variant("CMSA+Gated (self-gated)", "cmsa", "words", "self_gated", 57.08),
    "gated_fusion": Variant("CMSA+GF (gated fusion, the paper)", "cmsa", "words", "gated", 58.32),
}
GROUPS = {
    "attention": (
        "no_attention",
        "word_attention",
        "pixel_attention",
        "word_pixel_pair_attention",
        "cmsa_w",
    ),
    "representation": ("cmsa_s", "cmsa_w"),
    # cmsa_w is the no-fusion reference (res5 alone).
    "fusion": ("cmsa_w", "ppm", "deconv", "convlstm", "self_gated", "gated_fusion"),
}
GROUP_TITLES = {
    "attention": "Attention methods (Table 2; res5 only)",
    "representation": "Multimodal feature representation (Table 3, top; res5 only)",
    "fusion": "Multi-level feature fusion (Table 3, bottom)",
}
# The variant each group's paper table puts on top: the one the ordering check compares with.
PAPER_BEST = {"attention": "cmsa_w", "representation": "cmsa_w", "fusion": "gated_fusion"}


def resolve_variants(
    variants: str | Sequence[str],
) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """Variant names, in table order without repeats, from groups and / or variant names.

    Args:
        variants: a string (`"all"`, a group, a variant name, or several of those separated by
            commas or `|`) or a sequence of such strings.

    Returns:
        `(names, groups)`: the variant names, and the groups asked for (a dict group -> names;
        variants named one by one form the group `"selected"`).
    """
    if isinstance(variants, str):
        variants = [variants]
    tokens = []
    for item in variants:
        if not isinstance(item, str):
            raise ValueError(f"variants must be strings, got {item!r}.")
        tokens += [t.strip() for t in item.replace("|", ",").split(",") if t.strip()]
    if not tokens:
        raise ValueError(
            f"No variants given; use 'all', a group of {sorted(GROUPS)} or names of "
            f"{sorted(VARIANTS)}."
        )
    groups = {}
    for token in tokens:
        if token == "all":
            groups.update(GROUPS)
        elif token in GROUPS:
            groups[token] = GROUPS[token]
        elif token in VARIANTS:
            groups.setdefault("selected", ())
            if token not in groups["selected"]:
                groups["selected"] += (token,)
        else:
            raise ValueError(
                f"Unknown variant {token!r}; use 'all', a group of {sorted(GROUPS)} or a variant "
                f"of {sorted(VARIANTS)}."
            )
    ordered = [g for g in (*GROUPS, "selected") if g in groups]
    groups = {g: tuple(groups[g]) for g in ordered}
    names = []
    for group in groups.values():
        names += [name for name in group if name not in names]
    return names, groups


def variant_config(
    config: ml_collections.ConfigDict, name: str, seed: int, steps: int | None = None
) -> ml_collections.ConfigDict:
    """A copy of `config` with variant `name`'s three model fields, `seed` and the step budget."""
    variant = VARIANTS[name]
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.model.attention.variant = variant.attention
        config.model.word_representation = variant.word_representation
        config.model.fusion = variant.fusion
        config.train.seed = int(seed)
        if steps is not None:
            config.train.steps = int(steps)
    return config


def check_config(config: ml_collections.ConfigDict, names: Sequence[str]) -> None:
    """Raises a ValueError when `config` cannot build the variants `names` (the attention
    ablations exist for the paper form only)."""
    form = config.model.attention.form
    partial = [n for n in names if VARIANTS[n].attention != "cmsa"]
    if partial and form != "paper":
        raise ValueError(
            f"The attention ablations {partial} exist for the paper form only, but "
            f"config.model.attention.form is {form!r}. Use the config without ':official', or "
            "other variants."
        )
