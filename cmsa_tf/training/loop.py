"""The training loop: resume, step, log, checkpoint, evaluate, stop cleanly on SIGTERM."""

import math
import os
import signal
import time

import keras
import ml_collections
import tensorflow as tf
from absl import logging

from cmsa_tf.training.strategies import create_strategy
from cmsa_tf.training.summaries import TrainingEvaluator
from cmsa_tf.training.trainer import Trainer


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite."""


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool = True,
) -> dict:
    """Trains `config` in `workdir` (resuming if it holds checkpoints); returns the last log row.

    Args:
        config: the full experiment config.
        workdir: the run's directory (checkpoints, TensorBoard, `config.json`).
        strategy: default `create_strategy("mirrored")`.
        progress: a progress bar on the chief.

    Returns:
        As `train_loop`.
    """
    strategy = strategy or create_strategy("mirrored")
    tf.io.gfile.makedirs(workdir)
    keras.utils.set_random_seed(config.train.seed)
    return train_loop(Trainer(config, workdir, strategy), progress=progress)


def train_loop(trainer: Trainer, progress: bool = True) -> dict:
    """Runs `trainer` from its latest checkpoint to `config.train.steps`.

    Checkpoints every `config.train.checkpoint_every` steps, at the end and on SIGTERM; evaluates
    every `config.train.eval_every` steps (and at the end) with `TrainingEvaluator` on the chief.
    With `config.train.steps_per_loop = k > 1`, one `tf.function` call runs up to k steps (never
    past a log, checkpoint or evaluation step) and the loss comes back to the host once per call.
    `config.train.jit_compile` compiles the replica step with XLA.

    Returns:
        The last log row: `step`, `stopped_early` (SIGTERM), and when a step was logged `loss`,
        `weight_decay_loss`, `learning_rate`, `examples_per_second`.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite (nothing is saved for that step).
    """
    config = trainer.config
    start = trainer.restore()  # before config.json: a mismatched config must not overwrite it
    if trainer.chief:
        with tf.io.gfile.GFile(os.path.join(trainer.workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    total = int(config.train.steps)
    if start >= total:
        logging.info("Already trained to step %d of %d.", start, total)
        return {"step": start, "stopped_early": False}

    eval_every = int(config.train.get("eval_every") or 0)
    evaluator = None
    if eval_every and trainer.chief:
        evaluator = TrainingEvaluator(config, trainer.model, trainer.workdir)

    def request_stop(signum, frame):
        logging.warning("Received signal %d: checkpointing and stopping.", signum)
        trainer.stop_requested = True

    try:
        previous_handler = signal.signal(signal.SIGTERM, request_stop)
    except ValueError:  # signals can only be handled in the main thread
        previous_handler = None

    iterator = iter(trainer.dataset())
    steps_per_loop = int(config.train.get("steps_per_loop") or 1)
    if steps_per_loop < 1:
        raise ValueError(f"config.train.steps_per_loop must be >= 1, got {steps_per_loop}.")
    if steps_per_loop == 1:
        train_step = trainer.train_step_fn()
    else:
        train_steps = trainer.train_steps_fn()
        boundaries = [int(config.train.log_every), int(config.train.checkpoint_every)]
        boundaries += [eval_every] if eval_every else []

        def train_step(iterator):
            # Up to the next log / checkpoint / evaluation step or the end, steps_per_loop at most.
            current = trainer.step
            limit = min([total] + [(current // b + 1) * b for b in boundaries if b > 0])
            count = max(1, min(steps_per_loop, limit - current))
            data_loss, penalty, finite = train_steps(iterator, tf.constant(count, tf.int32))
            if not bool(finite):
                return float("nan"), float(penalty)
            return data_loss, penalty

    bar = None
    if progress and trainer.chief:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)
    last = {"step": start}
    saved_step = start
    window_start, window_steps = time.perf_counter(), 0
    try:
        while trainer.step < total and not trainer.stop_requested:
            before = trainer.step
            data_loss, penalty = train_step(iterator)
            step = trainer.step
            window_steps += step - before
            data_loss, penalty = float(data_loss), float(penalty)
            if not (math.isfinite(data_loss) and math.isfinite(penalty)):
                latest = trainer.manager.latest_checkpoint
                raise NonFiniteLossError(
                    f"The training loss became {data_loss} at step {step}; stopping without "
                    f"saving. The last good checkpoint is {latest or 'none (no checkpoint yet)'}. "
                    "Lower config.train.learning_rate or check the input data."
                )
            if bar is not None:
                bar.update(step - before)
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
