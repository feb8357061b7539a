"""`distributes_input`: which strategies get the distributed input (the Trainer's dataset)."""

import textwrap

import tensorflow as tf

from cmsa_tf.training import create_strategy, distributes_input
from tests.helpers import REPO, run_script


def test_one_cpu_replica_takes_a_plain_iterator():
    assert not distributes_input(tf.distribute.get_strategy())
    assert not distributes_input(tf.distribute.OneDeviceStrategy("/cpu:0"))
    assert not distributes_input(tf.distribute.MirroredStrategy(["/cpu:0"]))
    has_gpu = bool(tf.config.list_logical_devices("GPU"))
    for name in ("mirrored", "one_device"):
        assert distributes_input(create_strategy(name)) == has_gpu


def test_several_replicas_or_a_gpu_take_the_distributed_input():
    script = textwrap.dedent(
        """
        import sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
        sys.path.insert(0, {repo!r})
        from cmsa_tf.training import create_strategy, distributes_input
        two = create_strategy("mirrored")
        assert two.num_replicas_in_sync == 2, two.num_replicas_in_sync
        assert distributes_input(two)
        # A replica on a GPU device keeps the distributed input (prefetch to the device); the
        # strategy is only named here, not run, so no GPU is needed.
        gpu = tf.distribute.OneDeviceStrategy("/gpu:0")
        assert distributes_input(gpu)
        print("OK")
        """
    ).format(repo=str(REPO))
    run_script(script, timeout=120)
