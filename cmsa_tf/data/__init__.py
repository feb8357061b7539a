"""Files on disk -> tf.data batches.

`tokenizer`, `refer` (REFER reader), `shapes` (ShapesRef generator), `build` (TFRecord builder),
`schema` (the record format), `manifest`, `image_io`, `preprocess`, `pipeline`, `bucketing`
(length bucketing of training batches).
"""
