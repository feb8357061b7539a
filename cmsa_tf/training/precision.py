"""Mixed precision: `config.train.mixed_precision` -> the global Keras dtype policy."""

import keras

# config.train.mixed_precision -> Keras policy name.
POLICIES = {
    "": "float32",
    "float32": "float32",
    "bfloat16": "mixed_bfloat16",
    "float16": "mixed_float16",
}


def set_precision(policy: str) -> str:
    """Sets the global Keras dtype policy for `policy` (`""`, `"float32"`, `"bfloat16"` or
    `"float16"`); returns the Keras policy name (e.g. `"mixed_float16"`)."""
    if policy not in POLICIES:
        raise ValueError(
            f"config.train.mixed_precision must be one of {sorted(POLICIES)}, got {policy!r}."
        )
    keras.mixed_precision.set_global_policy(POLICIES[policy])
    return POLICIES[policy]
