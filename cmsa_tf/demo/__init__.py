"""cmsa-demo, the web demo over an exported model (docs/serving.md, "Web demo").

- `client`: `LocalClient` (the SavedModel in this process) and `RestClient` (TF Serving REST)
  behind one interface; both read the answer with `cmsa_tf.saved_model_predictor.split_outputs`.
- `render`: an answer as pictures (overlay, mask, Fig. 4 word attention, Fig. 5 heat maps), all
  drawn by `cmsa_tf.visualize`.
- `examples`: the ShapesRef example row.
- `app`: the Gradio page (`build_app`) and its handler, also the API endpoint `predict`.
- `python -m cmsa_tf.demo` / `cmsa-demo`: the command line (`__main__.py`).

Importing this package imports neither Gradio nor TensorFlow; `app` needs the `[demo]` extra.
"""
