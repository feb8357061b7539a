"""SavedModel export for TF Serving and `cmsa-predict` (docs/serving.md).

- `module`: `CMSAExportModule`, the `tf.Module` with the `serving_default` and
  `predict_preprocessed` signatures (decoding, preprocessing and tokenisation in the graph).
- `saving`: versioned saving (`save_module`, `export_model`) and `list_versions`.
- `python -m cmsa_tf.export --config=... --workdir=... --export_dir=...`: the command line
  (`__main__.py`).
"""

from cmsa_tf.export.module import (
    PREPROCESSED_OUTPUTS,
    PREPROCESSED_SIGNATURE,
    SERVING_OUTPUTS,
    SERVING_SIGNATURE,
    CMSAExportModule,
)
from cmsa_tf.export.saving import (
    METADATA_FILE,
    export_model,
    list_versions,
    save_module,
    untracked_variables,
)

__all__ = [
    "CMSAExportModule",
    "METADATA_FILE",
    "PREPROCESSED_OUTPUTS",
    "PREPROCESSED_SIGNATURE",
    "SERVING_OUTPUTS",
    "SERVING_SIGNATURE",
    "export_model",
    "list_versions",
    "save_module",
    "untracked_variables",
]
