"""`--distribute mirrored` on 2 devices trains to the same weights as one device for the
same global batch: TensorFlow's MirroredStrategy on 2 logical CPU devices, and Keras'
DataParallel on JAX with 2 host devices. Each runs in its own process, because the
devices must be set up before the backend starts."""

import json
import os
import textwrap
from pathlib import Path

import pytest

from helpers import forked_zoo

pytestmark = pytest.mark.large  # the large tier (--run_large; CI runs it)


ROOT = Path(__file__).resolve().parents[1]

TRAIN_BOTH_WAYS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    from zoo.training.distribute import replicas, strategy
    from zoo.training import Defaults, Settings, Tracking, fit, strategy_scope

    def train(chosen, dataset=False):
        rng = np.random.default_rng(0)
        x = rng.random((256, 8), dtype=np.float32)
        y = (x[:, :4].sum(1) > x[:, 4:].sum(1)).astype("int64")
        data = (x, y)
        if dataset:  # one that reshuffles every epoch, as zoo.data's image folders do
            import tensorflow as tf
            data = tf.data.Dataset.from_tensor_slices(data).shuffle(256, seed=1).batch(32)
        with strategy_scope(chosen):
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                      keras.layers.Dense(2, activation="softmax")])
        result = fit(model, data, epochs=3, batch_size=32, shuffle=False,
                     defaults=Defaults.classifier(0.1).replace(optimizer="sgd"), tracking=Tracking.off(), verbose=0,
                     settings=Settings(strategy=chosen))
        return np.concatenate([np.asarray(w).reshape(-1) for w in model.get_weights()]), result.history

    one, history_one = train(None)
    chosen = strategy("mirrored")
    two, history_two = train(chosen)
    found = {"replicas": replicas(chosen), "max_difference": float(np.abs(one - two).max()),
             "loss_one": [h["loss"] for h in history_one], "loss_two": [h["loss"] for h in history_two]}
    if keras.backend.backend() == "tensorflow":
        one, _ = train(None, dataset=True)
        two, _ = train(chosen, dataset=True)
        found["dataset_max_difference"] = float(np.abs(one - two).max())
    print(json.dumps(found))
""")

TF_TWO_DEVICES = textwrap.dedent("""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""")


def run_python(script, env=None, timeout=300):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT), **(env or {})}
    done = forked_zoo.python_run(["-c", script], env=environment, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_mirrored_on_two_logical_cpus_trains_the_same_weights_as_one_device():
    found = run_python(TF_TWO_DEVICES + TRAIN_BOTH_WAYS, env={"KERAS_BACKEND": "tensorflow"})
    assert found["replicas"] == 2
    assert found["max_difference"] < 1e-5, found
    # A dataset that reshuffles each epoch is seen in the same orders on 2 devices as on one.
    assert found["dataset_max_difference"] < 1e-5, found
    assert found["loss_two"][-1] < found["loss_two"][0]


def test_jax_data_parallel_on_two_host_devices_trains_the_same_weights_as_one_device():
    pytest.importorskip("jax")
    found = run_python(TRAIN_BOTH_WAYS, env={"KERAS_BACKEND": "jax",
                                             "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert found["replicas"] == 2
    assert found["max_difference"] < 1e-5, found


def test_zoo_finetune_distributed_over_two_devices_writes_a_complete_run(tmp_path):
    """The task path: `zoo.train("classifier", ..., distribute="mirrored")` builds the
    model in the strategy's scope and trains both phases on 2 replicas."""
    script = TF_TWO_DEVICES + textwrap.dedent(f"""
        import json
        import numpy as np
        import zoo
        from zoo.data.digits import load_digits_28
        from helpers.digit_folders import write_folder

        x, y = load_digits_28()
        data = write_folder(__import__("pathlib").Path({str(tmp_path)!r}) / "data", x, y, classes=(0, 1),
                            per_class=40)
        run = zoo.train("classifier", data, model="lenet5", epochs=1, freeze_epochs=1, batch_size=16, lr=1e-2,
                        out={str(tmp_path / "run")!r}, distribute="mirrored", verbose=0, no_tensorboard=True)
        print(json.dumps({{"val_accuracy": run.metrics["val_accuracy"], "epochs": len(run.metrics["history"])}}))
    """)
    found = run_python(script, env={"KERAS_BACKEND": "tensorflow",
                                    "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"})
    assert found["epochs"] == 2 and found["val_accuracy"] >= 0.9, found
    assert (tmp_path / "run" / "model.keras").is_file()


def test_a_bad_distribution_is_one_clear_error(monkeypatch):
    from zoo.training.distribute import strategy
    from zoo.errors import OptionError

    with pytest.raises(OptionError, match="one of none, mirrored, multiworker"):
        strategy("everywhere")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(OptionError, match="needs TF_CONFIG"):
        strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{cluster")
    with pytest.raises(OptionError, match="TF_CONFIG is not JSON"):
        strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}')
    with pytest.raises(OptionError, match="task 'worker' 3 is not in its cluster"):
        strategy("multiworker")
    assert strategy("none") is None


def test_each_worker_writes_its_own_run_and_the_chief_the_one_named():
    from zoo.training.distribute import is_chief, worker_run_dir

    def tf_config(task_type, index, chief=False):
        cluster = {"worker": ["a:1", "b:1"], **({"chief": ["c:1"]} if chief else {})}
        return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}

    assert is_chief({}) and is_chief(tf_config("worker", 0))
    assert not is_chief(tf_config("worker", 1)) and not is_chief(tf_config("worker", 0, chief=True))
    assert is_chief(tf_config("chief", 0, chief=True))
    assert worker_run_dir(Path("runs/birds"), "multiworker", tf_config("worker", 0)) == Path("runs/birds")
    assert worker_run_dir(Path("runs/birds"), "multiworker", tf_config("worker", 1)) == Path("runs/birds.worker-1")
    assert worker_run_dir(Path("runs/birds"), "mirrored", tf_config("worker", 1)) == Path("runs/birds")
