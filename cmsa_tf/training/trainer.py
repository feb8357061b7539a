"""The Trainer: model, optimiser, checkpoints, summaries and the distributed train step.

The recipe (loss, optimiser, weight decay) is described in docs/design.md, "Training recipe".
"""

import os

import keras
import ml_collections
import tensorflow as tf
from absl import logging

from cmsa_tf import losses, optimization
from cmsa_tf.data import augment, manifest, pipeline
from cmsa_tf.models.factory import build_model
from cmsa_tf.models.restore import checkpoint_dir
from cmsa_tf.training.precision import set_precision
from cmsa_tf.training.strategies import distributes_input, is_chief


def _has_optimizer(checkpoint: str) -> bool:
    """Whether a checkpoint holds optimiser state (training's do; an imported model's do not)."""
    return any(name.startswith("optimizer/") for name, _ in tf.train.list_variables(checkpoint))


class Trainer:
    """Holds the model, optimiser, checkpoints and summaries of one training run.

    Args:
        config: the full experiment config (`configs/*.py`).
        workdir: the run's directory: checkpoints in `<workdir>/checkpoints`, TensorBoard
            summaries in `<workdir>/train`.
        strategy: the tf.distribute strategy; `config.train.batch_size` is the global batch and
            must be divisible by its number of replicas.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        workdir: str,
        strategy: tf.distribute.Strategy,
    ):
        self.config = config
        self.workdir = workdir
        self.strategy = strategy
        self.chief = is_chief(strategy)
        data = config.data
        manifest.check_tokenizer(data.tfrecord_dir, data.get("tokenizer", "default"))
        self.vocab_size = manifest.vocab_size(data.tfrecord_dir)
        self.train_files = manifest.split_files(data.tfrecord_dir, data.train_split)
        self.global_batch = int(config.train.batch_size)
        if self.global_batch % strategy.num_replicas_in_sync:
            raise ValueError(
                f"config.train.batch_size={self.global_batch} is not divisible by the "
                f"{strategy.num_replicas_in_sync} replicas."
            )
        self.precision = set_precision(config.train.get("mixed_precision") or "")
        with strategy.scope():
            model_config = config.model.copy_and_resolve_references()
            self.model = build_model(
                model_config,
                vocab_size=self.vocab_size,
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
        directory = checkpoint_dir(workdir)
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
    def step(self) -> int:
        """The optimiser's step counter (checkpointed with the weights)."""
        return int(self.optimizer.iterations.numpy())

    def restore(self) -> int:
        """Restores the latest checkpoint, if any; returns the step it resumed at.

        Raises:
            ValueError: the checkpoint does not hold this config's model (the workdir was
                trained with another config); nothing in the workdir is changed.
        """
        latest = self.manager.latest_checkpoint
        if latest and not _has_optimizer(latest):
            # An imported model (cmsa_tf.import_authors): its weights and step, a fresh optimiser.
            checkpoint = tf.train.Checkpoint(model=self.model, step=self.optimizer.iterations)
            self._restore_matching(checkpoint, latest)
            logging.info("Fine-tuning %s from step %d (fresh optimiser).", latest, self.step)
        elif latest:
            self._restore_matching(self.checkpoint, latest)
            logging.info("Resumed from %s at step %d.", latest, self.step)
        else:
            logging.info("No checkpoint in %s: starting from scratch.", self.manager.directory)
        return self.step

    def _restore_matching(self, checkpoint: tf.train.Checkpoint, path: str) -> None:
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError) as error:
            first_line = str(error).splitlines()[0][:300]
            raise ValueError(
                f"The checkpoint {path} in --workdir={self.workdir} does not hold the model of "
                f"this config: it was trained with another config (the one in "
                f"{os.path.join(self.workdir, 'config.json')}). Train in a new --workdir, or "
                f"resume with the config it was trained with. ({first_line})"
            ) from None

    def save(self) -> str:
        """Writes a checkpoint numbered by the current step; returns its path."""
        path = self.manager.save(checkpoint_number=self.optimizer.iterations)
        if self.chief:
            logging.info("Saved checkpoint %s.", path)
        return path

    def dataset(self, distribute: bool | None = None):
        """The training split, shuffled and repeated, distributed over the replicas.

        Args:
            distribute: whether to go through the strategy's distributed input (a
                `tf.distribute.DistributedDataset`) or return a plain `tf.data.Dataset` whose
                batches `strategy.run` takes as they are. `None`: `distributes_input(strategy)`,
                which keeps one replica on a CPU plain (2.1x faster there).
        """
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
                preprocessing=data.get("preprocessing", "default"),
                augment=augment.from_config(data, seed=self.config.train.seed),
                length_buckets=data.get("length_buckets"),
                expressions_per_image=data.get("expressions_per_image", 1),
            )

        if distribute is None:
            distribute = distributes_input(self.strategy)
        if not distribute:
            return dataset_fn(tf.distribute.InputContext())
        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def _replica_step(self, batch):
        train = self.config.train
        variables = self.model.trainable_variables
        replicas = self.strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            inputs = {key: batch[key] for key in ("image", "words", "image_index") if key in batch}
            logits = self.model(inputs, training=True)
            per_example = losses.segmentation_loss(
                batch["mask"],
                logits,
                train.loss_reduction,
                region_loss=train.get("region_loss", "none"),
                region_weight=train.get("region_loss_weight", 1.0),
            )
            data_loss = tf.reduce_sum(per_example) / self.global_batch
            recipe = train.get("recipe", "default")
            penalty = optimization.l2_penalty(variables, train.weight_decay, recipe)
            loss = data_loss + penalty / replicas
            scaled = self.optimizer.scale_loss(loss) if self.precision == "mixed_float16" else loss
        grads = optimization.scale_gradients(tape.gradient(scaled, variables), variables, train)
        self.optimizer.apply(grads, variables)
        return data_loss, penalty / replicas

    def _replica_fn(self):
        """The replica step, compiled with XLA when `config.train.jit_compile`."""
        if self.config.train.get("jit_compile", False):
            if not any(tf.config.list_physical_devices(kind) for kind in ("GPU", "TPU")):
                logging.warning(
                    "config.train.jit_compile=True without a GPU or TPU: on CPUs the XLA train "
                    "step measured far slower than the plain one (README, Benchmarks)."
                )
            return tf.function(self._replica_step, jit_compile=True)
        return self._replica_step

    def _one_step(self, iterator, replica_step):
        data_loss, penalty = self.strategy.run(replica_step, args=(next(iterator),))
        data_loss = self.strategy.reduce(tf.distribute.ReduceOp.SUM, data_loss, axis=None)
        penalty = self.strategy.reduce(tf.distribute.ReduceOp.SUM, penalty, axis=None)
        return data_loss, penalty

    def train_step_fn(self):
        """A tf.function `train_step(iterator) -> (data_loss, weight_decay_loss)`: one step on
        the next global batch, losses summed over the replicas."""
        replica_step = self._replica_fn()

        @tf.function
        def train_step(iterator):
            return self._one_step(iterator, replica_step)

        return train_step

    def train_steps_fn(self):
        """A tf.function `train_steps(iterator, num_steps) -> (data_loss, weight_decay_loss,
        finite)`: `num_steps` (a scalar int32 tensor) steps in one call, so the host waits on
        the device once per call. The losses are the last step's; `finite` is whether every
        step's losses were finite."""
        replica_step = self._replica_fn()

        @tf.function
        def train_steps(iterator, num_steps):
            data_loss, penalty = self._one_step(iterator, replica_step)
            finite = tf.math.is_finite(data_loss) & tf.math.is_finite(penalty)
            for _ in tf.range(num_steps - 1):
                data_loss, penalty = self._one_step(iterator, replica_step)
                finite = finite & tf.math.is_finite(data_loss) & tf.math.is_finite(penalty)
            return data_loss, penalty, finite

        return train_steps

    def learning_rate(self) -> float:
        """The learning rate at the current step."""
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        return float(optimizer.learning_rate)

    def write_scalars(self, scalars: dict, step: int) -> None:
        """Writes `scalars` and the fusion gammas of every level to `<workdir>/train`."""
        with self.writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
            for index, gamma in enumerate(self.model.gammas):
                tf.summary.scalar(f"fusion/gamma_{self.model.levels[index]}", gamma.numpy())
        self.writer.flush()
