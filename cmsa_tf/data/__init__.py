"""Files on disk -> tf.data batches: tokenizer, REFER reader, ShapesRef, TFRecord builder, pipeline."""
