# The two commands a newcomer runs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

# make demo: ShapesRef -> TFRecords -> train configs/shapes.py on the CPU -> evaluate (+ DenseCRF).
DEMO_DATA := data/shapes_ref
DEMO_RECORDS := data/tfrecords/shapes
DEMO_WORKDIR := workdir/shapes
DEMO_CONFIG := configs/shapes.py

.PHONY: test test-fast lint format demo demo-app install clean

$(STAMP): setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# make test: the whole suite; make test-fast: without the tests marked slow (subprocesses, end to end).
# Both run one pytest-xdist worker per core (TEST_WORKERS=auto; TEST_WORKERS=0 runs in one process),
# each test file whole in one worker so that its module fixtures are built once.
TEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile --durations=15

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# make lint: ruff's checks and formatting, as configured in pyproject.toml; make format applies them.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

DEMO_TIMING := $(DEMO_WORKDIR)/timing.txt
# Appends "UNIX_SECONDS STAGE" to the demo's timing file (cmsa_tf.visualize.learning_curve).
mark = echo "$$(date +%s) $(1)" >> $(DEMO_TIMING)

demo: $(STAMP)
	@mkdir -p $(DEMO_WORKDIR) && echo "$$(date +%s) start" > $(DEMO_TIMING)
	$(PY) -m cmsa_tf.data.shapes --output_dir=$(DEMO_DATA)
	$(PY) -m cmsa_tf.data.build --refer_root=$(DEMO_DATA) --dataset=shapes --split_by=shapes \
	    --image_root=$(DEMO_DATA)/images --output_dir=$(DEMO_RECORDS)
	@$(call mark,data + TFRecords)
	$(PY) -m cmsa_tf.train --config=$(DEMO_CONFIG) --workdir=$(DEMO_WORKDIR)
	@$(call mark,training (with its learning-curve evaluations))
	$(PY) -m cmsa_tf.evaluate --config=$(DEMO_CONFIG) --workdir=$(DEMO_WORKDIR) \
	    --split=val,testA,testB --crf --num_overlays=6
	@$(call mark,evaluation (val + testA + testB with and without CRF))
	$(PY) -m cmsa_tf.export --config=$(DEMO_CONFIG) --workdir=$(DEMO_WORKDIR) \
	    --export_dir=saved_models/shapes --overwrite
	$(VENV)/bin/cmsa-predict --model saved_models/shapes \
	    --image $(DEMO_DATA)/images/shapes_val_000000.jpg --expression "the big blue triangle" \
	    --output $(DEMO_WORKDIR)/predict/big_blue_triangle.png
	@$(call mark,export + predict)
	$(PY) -m cmsa_tf.visualize.learning_curve --workdir=$(DEMO_WORKDIR) --timing=$(DEMO_TIMING)
	@echo "Overlays: $(DEMO_WORKDIR)/eval/overlays/  Metrics: $(DEMO_WORKDIR)/eval/summary.md"
	@echo "SavedModel: saved_models/shapes/  TensorBoard: tensorboard --logdir $(DEMO_WORKDIR)"
	@echo "Web demo: make demo-app  (runs: $(VENV)/bin/cmsa-demo --model saved_models/shapes; open http://127.0.0.1:7860)"

# make demo-app: the web demo (Gradio) on the export of `make demo`; DEMO_APP_FLAGS adds flags.
demo-app: $(STAMP)
	$(VENV)/bin/cmsa-demo --model saved_models/shapes $(DEMO_APP_FLAGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
