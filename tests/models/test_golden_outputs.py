"""Every config in configs/ and every ablation variant computes the recorded function.

`golden/cmsa_outputs.npz` holds, for each case, the logits and per-level word attention of the model
that `build_model(config.model)` builds, with every weight set by a rule that depends only on the
weight's position in `model.weights`, its shape and its leaf name (so the check survives renamed
layers, but not a changed function). Regenerate after an intended change of the model's function:

    python tests/models/test_golden_outputs.py --write
"""

import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "cmsa_outputs.npz"
CONFIG_FILES = (
    "refcoco_unc",
    "refcoco+_unc",
    "refcocog_umd",
    "refcocog_google",
    "referit",
    "shapes",
)
FORMS = ("paper", "official")
# The ablation variants (Tables 2 and 3) as the three model fields they set.
VARIANTS = {
    "no_attention": ("none", "words", "single"),
    "word_attention": ("word", "words", "single"),
    "pixel_attention": ("pixel", "words", "single"),
    "word_pixel_pair_attention": ("word_pixel_pair", "words", "single"),
    "cmsa_w": ("cmsa", "words", "single"),
    "cmsa_s": ("cmsa", "sentence", "single"),
    "ppm": ("cmsa", "words", "ppm"),
    "deconv": ("cmsa", "words", "deconv"),
    "convlstm": ("cmsa", "words", "convlstm"),
    "self_gated": ("cmsa", "words", "self_gated"),
    "gated_fusion": ("cmsa", "words", "gated"),
}
IMAGE_SIZE = 48
VOCAB_SIZE = 40
WORDS = np.array([[3, 4, 5, 0, 0, 0], [7, 8, 9, 10, 11, 12]], dtype="int32")


def _load_config(name, arg):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"golden_{name}", REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def cases():
    """Case name -> (config file, config argument, variant or None)."""
    out = {}
    for name in CONFIG_FILES:
        for form in FORMS:
            out[f"{name}:{form}"] = (name, form, None)
    for variant, (attention, _, _) in VARIANTS.items():
        out[f"shapes:paper:{variant}"] = ("shapes", "paper", variant)
        if attention == "cmsa":
            out[f"shapes:official:{variant}"] = ("shapes", "official", variant)
    return out


def _set_weights(model):
    """Sets every float weight from its index, shape and leaf name; returns the shapes in order."""
    shapes = []
    for index, weight in enumerate(model.weights):
        shape = tuple(weight.shape)
        shapes.append(shape)
        if not str(weight.dtype).startswith("float"):
            continue
        rng = np.random.default_rng(1000 + index)
        leaf = weight.name.split("/")[-1]
        if "variance" in leaf or leaf == "gamma" and len(shape) == 1:
            value = rng.uniform(0.5, 1.5, size=shape)
        elif len(shape) <= 1:
            value = rng.normal(scale=0.1, size=shape)
        else:
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(scale=1.0 / np.sqrt(fan_in), size=shape)
        weight.assign(value.astype(str(weight.dtype)))
    return shapes


def case_model_config(name, arg, variant):
    """The `config.model` of one case: its config file's, no pretrained weights, its variant."""
    model_config = _load_config(name, arg).model
    with model_config.unlocked():
        model_config.backbone.weights = None
        if variant is not None:
            attention, representation, fusion = VARIANTS[variant]
            model_config.attention.variant = attention
            model_config.word_representation = representation
            model_config.fusion = fusion
    return model_config


# Cases whose model configs are equal (the REFER configs differ only in their data) build the
# same model: each distinct model config is computed once per test session.
_RESULTS = {}


def compute_case(name, arg, variant):
    model_config = case_model_config(name, arg, variant)
    key = model_config.to_json(sort_keys=True)
    if key not in _RESULTS:
        _RESULTS[key] = _compute(model_config)
    return _RESULTS[key]


def _compute(model_config):
    from cmsa_tf.models.factory import build_model

    model = build_model(
        model_config, vocab_size=VOCAB_SIZE, image_size=IMAGE_SIZE, max_words=WORDS.shape[1]
    )
    shapes = _set_weights(model)
    rng = np.random.default_rng(7)
    images = rng.normal(scale=50.0, size=(2, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    out = model({"image": images, "words": WORDS}, return_attention=True)
    return {
        "logits": np.asarray(out["logits"]),
        "word_attention": np.asarray(out["word_attention"]),
        "shapes": np.array([",".join(map(str, s)) for s in shapes]),
    }


def write_golden():
    arrays = {}
    for case, spec in cases().items():
        result = compute_case(*spec)
        for key, value in result.items():
            arrays[f"{case}/{key}"] = value
        print(case, float(result["logits"].std()), flush=True)
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **arrays)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(cases()))
def test_model_function_matches_golden(case):
    golden = np.load(GOLDEN)
    result = compute_case(*cases()[case])
    np.testing.assert_array_equal(
        result["shapes"], golden[f"{case}/shapes"], err_msg="weight order or shapes changed"
    )
    logits = golden[f"{case}/logits"]
    assert np.isfinite(logits).all() and logits.std() > 1e-3
    np.testing.assert_allclose(
        result["logits"], logits, rtol=1e-4, atol=1e-4 * np.abs(logits).max()
    )
    np.testing.assert_allclose(
        result["word_attention"], golden[f"{case}/word_attention"], atol=1e-5
    )


def test_golden_covers_every_config_and_variant():
    golden = np.load(GOLDEN)
    recorded = {key.rsplit("/", 1)[0] for key in golden.files}
    assert recorded == set(cases())
    shipped = {p.stem for p in (REPO / "configs").glob("*.py")}
    assert shipped == set(CONFIG_FILES)


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit(f"usage: python {sys.argv[0]} --write")
    write_golden()
