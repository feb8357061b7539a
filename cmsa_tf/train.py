r"""Trains CMSA: absl main over tf.data and tf.distribute.

  python -m cmsa_tf.train --config=configs/refcoco_unc.py --workdir=workdir/refcoco_unc
  python -m cmsa_tf.train --config=configs/shapes.py --workdir=workdir/shapes \
      --config.train.batch_size=8 --config.train.steps=2000

Running the same command on the same workdir resumes from the last checkpoint (weights, optimiser
state and step). Checkpoints are written every `config.train.checkpoint_every` steps, at the end,
and when the process receives SIGTERM. TensorBoard: `tensorboard --logdir WORKDIR`.

Strategies (`--strategy`): `mirrored` (all local GPUs, else the CPU), `multi_worker` (several hosts,
from the TF_CONFIG environment variable), `one_device`. The batch size in the config is the global
batch; it is split across replicas and the loss is scaled by the global batch.
"""

import json
import math
import os
import signal
import time

from absl import app, flags, logging
from ml_collections import config_flags
import tensorflow as tf
import keras

from cmsa_tf import losses, optimization
from cmsa_tf.data import pipeline
from cmsa_tf.models.cmsa_segmenter import build_model
from cmsa_tf.utils import experiment

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and TensorBoard logs.")
_STRATEGY = flags.DEFINE_enum(
    "strategy",
    "mirrored",
    ["mirrored", "multi_worker", "one_device"],
    "Distribution strategy.",
)
_NUM_CPU_DEVICES = flags.DEFINE_integer(
    "num_cpu_devices",
    0,
    "Split the host CPU into this many logical devices (to run MirroredStrategy without GPUs).",
)


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite."""


def configure_cpu_devices(count):
    """Splits the first CPU into `count` logical devices; must run before TF initialises."""
    if count and count > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )


def create_strategy(name):
    """Returns the tf.distribute strategy called `name`."""
    if name == "multi_worker":
        # Must come before anything initialises the TF runtime (listing devices does).
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG environment variable describing the "
                "cluster and this worker's task."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name not in ("mirrored", "one_device"):
        raise ValueError(f"Unknown strategy {name!r}; use mirrored, multi_worker or one_device.")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if gpus:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def _set_precision(policy):
    policies = {"": "float32", "float32": "float32", "bfloat16": "mixed_bfloat16",
                "float16": "mixed_float16"}
    if policy not in policies:
        raise ValueError(
            f"config.train.mixed_precision must be one of {sorted(policies)}, got {policy!r}."
        )
    keras.mixed_precision.set_global_policy(policies[policy])
    return policies[policy]


class Trainer:
    """Holds the model, optimiser, checkpoints and summaries of one training run."""

    def __init__(self, config, workdir, strategy):
        self.config = config
        self.workdir = workdir
        self.strategy = strategy
        self.chief = is_chief(strategy)
        data = config.data
        self.manifest = experiment.read_manifest(data.tfrecord_dir)
        self.train_files = experiment.split_files(data.tfrecord_dir, data.train_split)
        self.global_batch = int(config.train.batch_size)
        if self.global_batch % strategy.num_replicas_in_sync:
            raise ValueError(
                f"config.train.batch_size={self.global_batch} is not divisible by the "
                f"{strategy.num_replicas_in_sync} replicas."
            )
        self.precision = _set_precision(config.train.get("mixed_precision") or "")
        with strategy.scope():
            model_config = config.model.copy_and_resolve_references()
            self.model = build_model(
                model_config,
                vocab_size=self.manifest["vocab_size"],
                image_size=data.image_size,
                max_words=data.max_words,
            )
            optimizer = optimization.create_optimizer(config.train)
            if self.precision == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            self.optimizer.build(self.model.trainable_variables)
            self.checkpoint = tf.train.Checkpoint(
                model=self.model, optimizer=self.optimizer, step=self.optimizer.iterations
            )
        directory = experiment.checkpoint_dir(workdir)
        if not self.chief:
            # Every worker must save (the save is collective); only the chief keeps its copy.
            directory = os.path.join(workdir, "worker_tmp", f"{strategy.cluster_resolver.task_id}")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint,
            directory,
            max_to_keep=config.train.keep_checkpoints,
            step_counter=self.optimizer.iterations,
            checkpoint_interval=None,
        )
        log_dir = os.path.join(workdir, "train") if self.chief else None
        self.writer = (
            tf.summary.create_file_writer(log_dir) if log_dir else tf.summary.create_noop_writer()
        )
        self.stop_requested = False

    @property
    def step(self):
        return int(self.optimizer.iterations.numpy())

    def restore(self):
        """Restores the latest checkpoint, if any; returns the step it resumed at."""
        latest = self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            logging.info("Resumed from %s at step %d.", latest, self.step)
        else:
            logging.info("No checkpoint in %s: starting from scratch.", self.manager.directory)
        return self.step

    def save(self):
        path = self.manager.save(checkpoint_number=self.optimizer.iterations)
        if self.chief:
            logging.info("Saved checkpoint %s.", path)
        return path

    def dataset(self):
        data = self.config.data

        def dataset_fn(input_context):
            return pipeline.make_dataset(
                self.train_files,
                image_size=data.image_size,
                max_words=data.max_words,
                batch_size=self.global_batch,
                training=True,
                shuffle_buffer=data.shuffle_buffer,
                seed=self.config.train.seed,
                deterministic=data.get("deterministic", False),
                input_context=input_context,
            )

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def _replica_step(self, batch):
        train = self.config.train
        variables = self.model.trainable_variables
        replicas = self.strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = self.model(
                {"image": batch["image"], "words": batch["words"]}, training=True
            )
            per_example = losses.sigmoid_cross_entropy(
                batch["mask"], logits, train.loss_reduction
            )
            data_loss = tf.reduce_sum(per_example) / self.global_batch
            penalty = optimization.l2_penalty(variables, train.weight_decay)
            loss = data_loss + penalty / replicas
            scaled = (
                self.optimizer.scale_loss(loss)
                if self.precision == "mixed_float16"
                else loss
            )
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        return data_loss, penalty / replicas

    def train_step_fn(self):
        @tf.function
        def train_step(iterator):
            data_loss, penalty = self.strategy.run(self._replica_step, args=(next(iterator),))
            data_loss = self.strategy.reduce(tf.distribute.ReduceOp.SUM, data_loss, axis=None)
            penalty = self.strategy.reduce(tf.distribute.ReduceOp.SUM, penalty, axis=None)
            return data_loss, penalty

        return train_step

    def learning_rate(self):
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        return float(optimizer.learning_rate)

    def write_scalars(self, scalars, step):
        with self.writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
            for index, gamma in enumerate(self.model.gammas):
                tf.summary.scalar(f"fusion/gamma_{self.model.levels[index]}", gamma.numpy())
        self.writer.flush()


def train_and_evaluate(config, workdir, strategy=None, progress=True):
    """Trains `config` in `workdir` (resuming if it holds checkpoints); returns the last log row."""
    strategy = strategy or create_strategy("mirrored")
    tf.io.gfile.makedirs(workdir)
    keras.utils.set_random_seed(config.train.seed)
    return train_loop(Trainer(config, workdir, strategy), progress=progress)


def train_loop(trainer, progress=True):
    """Runs `trainer` from its latest checkpoint to `config.train.steps`."""
    config = trainer.config
    if trainer.chief:
        with tf.io.gfile.GFile(os.path.join(trainer.workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    start = trainer.restore()
    total = int(config.train.steps)
    if start >= total:
        logging.info("Already trained to step %d of %d.", start, total)
        return {"step": start, "stopped_early": False}

    eval_every = int(config.train.get("eval_every") or 0)
    evaluator = None
    if eval_every and trainer.chief:
        from cmsa_tf import evaluate as evaluate_lib  # evaluation never imports training

        evaluator = evaluate_lib.TrainingEvaluator(config, trainer.model, trainer.workdir)

    def request_stop(signum, frame):  # pylint: disable=unused-argument
        logging.warning("Received signal %d: checkpointing and stopping.", signum)
        trainer.stop_requested = True

    try:
        previous_handler = signal.signal(signal.SIGTERM, request_stop)
    except ValueError:  # signals can only be handled in the main thread
        previous_handler = None

    iterator = iter(trainer.dataset())
    train_step = trainer.train_step_fn()
    bar = None
    if progress and trainer.chief:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)
    last = {"step": start}
    saved_step = start
    window_start, window_steps = time.perf_counter(), 0
    try:
        while trainer.step < total and not trainer.stop_requested:
            data_loss, penalty = train_step(iterator)
            step = trainer.step
            window_steps += 1
            data_loss, penalty = float(data_loss), float(penalty)
            if not (math.isfinite(data_loss) and math.isfinite(penalty)):
                latest = trainer.manager.latest_checkpoint
                raise NonFiniteLossError(
                    f"The training loss became {data_loss} at step {step}; stopping without "
                    f"saving. The last good checkpoint is {latest or 'none (no checkpoint yet)'}. "
                    "Lower config.train.learning_rate or check the input data."
                )
            if bar is not None:
                bar.update(1)
            if step % config.train.log_every == 0 or step == total:
                elapsed = time.perf_counter() - window_start
                rate = window_steps * trainer.global_batch / max(elapsed, 1e-9)
                lr = trainer.learning_rate()
                last = {
                    "step": step,
                    "loss": data_loss,
                    "weight_decay_loss": penalty,
                    "learning_rate": lr,
                    "examples_per_second": rate,
                }
                trainer.write_scalars(
                    {
                        "loss": data_loss,
                        "loss/weight_decay": penalty,
                        "learning_rate": lr,
                        "examples_per_second": rate,
                    },
                    step,
                )
                message = f"loss {data_loss:.4f} lr {lr:.3g} {rate:.1f} examples/s"
                if bar is not None:
                    bar.set_postfix_str(message)
                logging.info("step %d/%d %s", step, total, message)
                window_start, window_steps = time.perf_counter(), 0
            if step % config.train.checkpoint_every == 0:
                trainer.save()
                saved_step = step
            if evaluator is not None and step % eval_every == 0:
                evaluator.run(step)
        if trainer.step != saved_step:
            trainer.save()
    finally:
        if bar is not None:
            bar.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    if evaluator is not None and not trainer.stop_requested and trainer.step % eval_every:
        evaluator.run(trainer.step)
    if not trainer.chief:
        tf.io.gfile.rmtree(trainer.manager.directory)
    last["step"] = trainer.step
    last["stopped_early"] = trainer.stop_requested
    return last


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None or not _WORKDIR.value:
        raise app.UsageError("--config and --workdir are required.")
    configure_cpu_devices(_NUM_CPU_DEVICES.value)
    strategy = create_strategy(_STRATEGY.value)
    logging.info(
        "Training with %s over %d replica(s).",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
    )
    try:
        result = train_and_evaluate(_CONFIG.value, _WORKDIR.value, strategy)
    except NonFiniteLossError as error:
        logging.error("%s", error)
        raise SystemExit(f"error: {error}") from None
    logging.info("Done: %s", json.dumps(result))


if __name__ == "__main__":
    app.run(main)
