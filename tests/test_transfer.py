"""zoo.transfer: freezing, two-phase fine-tuning, cached features, lr_find — on real digits."""

import numpy as np
import pytest

import keras

import zoo
from zoo.data.digits import load_digits_28, train_test_split_digits
from zoo.training import lr_find
from zoo.transfer import cached_features, fine_tune, fit_one_cycle, freeze, replace_head, unfreeze
from zoo.transfer.fine_tune import layer_change, snapshot
from zoo.transfer.freeze import base_layers, is_batch_norm


@pytest.fixture(scope="module")
def digits_5_to_9():
    """Real digits 5-9 (relabelled 0-4): the training pool and the held-out split."""
    x, y = load_digits_28()
    x_train, x_test, y_train, y_test = train_test_split_digits(x, y)
    train, test = y_train >= 5, y_test >= 5
    return x_train[train], y_train[train] - 5, x_test[test], y_test[test] - 5


def per_class(x, y, n, seed):
    rng = np.random.default_rng(seed)
    index = np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False) for c in np.unique(y)])
    return x[index], y[index]


def tiny_resnet(num_classes=3, size=32):
    """ResNet50 (random init) at 32 px: real BatchNorm layers at a testable cost."""
    keras.utils.set_random_seed(0)
    base = zoo.create("resnet50", weights=None, include_top=False, input_shape=(size, size, 3))
    return replace_head(base, num_classes)


def small_bn_net(num_classes=3, size=32, blocks=6):
    """A plain conv/BatchNorm stack: the BatchNorm wiring of a ResNet at a fraction of
    the cost of compiling ResNet50's training step (~45 s on 2 cores)."""
    from zoo.architectures.preprocessing import Preprocess

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3), dtype="uint8")
    x = Preprocess("unit")(inputs)
    for i in range(blocks):
        x = keras.layers.Conv2D(8, 3, padding="same", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    return replace_head(keras.Model(inputs, x, name="small_bn"), num_classes)


def random_images(n, size=32, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype="uint8"), rng.integers(0, classes, n)


def base_state(model):
    """Every base variable, trainable or not (BatchNorm moving statistics included)."""
    return {v.path: np.array(v) for layer in base_layers(model) for v in layer.weights}


@pytest.mark.parametrize("cache_features", [False, True])
def test_frozen_phase_leaves_base_and_batchnorm_statistics_bit_identical(cache_features):
    model = tiny_resnet()
    x, y = random_images(16)
    before = base_state(model)
    head_before = [np.array(w) for w in model.get_layer("head_predictions").weights]
    result = fine_tune(model, (x, y), epochs=0, freeze_epochs=2, base_lr=1e-2, batch_size=8,
                       cache_features=cache_features, verbose=0)
    assert result.info["cached_features"] is cache_features
    after = base_state(model)
    assert before.keys() == after.keys()
    assert any("moving_mean" in name for name in after)
    for name in before:
        assert np.array_equal(before[name], after[name]), name
    # ...while the head did train.
    head_after = [np.array(w) for w in model.get_layer("head_predictions").weights]
    assert not np.allclose(head_before[0], head_after[0])


def test_unfrozen_phase_moves_base_earlier_layers_less_and_keeps_batchnorm_statistics():
    model = small_bn_net()
    x, y = random_images(32)
    before_state = base_state(model)
    before = snapshot(model)
    fine_tune(model, (x, y), epochs=2, freeze_epochs=1, base_lr=1e-2, lr_mult=100, batch_size=8, verbose=0)
    after_state = base_state(model)
    bn_stats = [n for n in before_state if "moving_" in n]
    kernels = [n for n in before_state if n.endswith("kernel")]
    # BatchNorm stays in inference mode after unfreezing (keras-team/keras#9214).
    assert all(np.array_equal(before_state[n], after_state[n]) for n in bn_stats)
    assert all(not np.array_equal(before_state[n], after_state[n]) for n in kernels)
    convs = [(name, change) for name, change in layer_change(before, model)
             if not is_batch_norm(model.get_layer(name))]
    third = len(convs) // 3
    early = np.mean([c for _, c in convs[:third]])
    late = np.mean([c for _, c in convs[-third:]])
    assert early < late / 3, (early, late)


def test_train_bn_lets_batchnorm_statistics_move_when_asked():
    model = small_bn_net()
    x, y = random_images(16)
    before = base_state(model)
    fine_tune(model, (x, y), epochs=1, freeze_epochs=0, batch_size=8, train_bn=True, verbose=0)
    after = base_state(model)
    assert any(not np.array_equal(before[n], after[n]) for n in before if "moving_mean" in n)


def test_freeze_and_unfreeze_by_layer_name_and_fraction():
    model = tiny_resnet()
    layers = base_layers(model)
    freeze(model, until="conv3_block1_out")
    names = [layer.name for layer in layers]
    cut = names.index("conv3_block1_out")
    assert not any(layer.trainable for layer in layers[: cut + 1])
    assert all(layer.trainable for layer in layers[cut + 1:])
    assert model.get_layer("head_predictions").trainable

    unfreeze(model, from_=0.5)
    half = len(layers) // 2
    assert not any(layer.trainable for layer in layers[:half])
    trainable_late = [layer for layer in layers[half:] if layer.trainable]
    assert trainable_late and not any(is_batch_norm(layer) for layer in trainable_late)

    with pytest.raises(ValueError, match="until"):
        freeze(model, until="no_such_layer")
    with pytest.raises(ValueError, match="from_"):
        unfreeze(model, from_=1.5)


def test_replace_head_on_a_model_with_its_top():
    model = zoo.create("lenet5")  # shipped weights, 10-way head
    new = replace_head(model, 4, dropout=0.1, hidden=16)
    assert new.output.shape[-1] == 4
    assert [l.name for l in new.layers if l.name.startswith("head_")] == ["head_hidden", "head_dropout", "head_predictions"]
    assert "predictions" not in [l.name for l in new.layers]


def test_cached_feature_head_training_matches_recomputing_the_base(digits_5_to_9):
    x_pool, y_pool, x_test, y_test = digits_5_to_9
    x, y = per_class(x_pool, y_pool, 20, seed=0)
    accuracies = {}
    for cached in (True, False):
        keras.utils.set_random_seed(0)
        model = replace_head(zoo.create("lenet5", weights="digits04", include_top=False), 5, dropout=0.1)
        fine_tune(model, (x, y), epochs=0, freeze_epochs=15, base_lr=1e-2, batch_size=16,
                  cache_features=cached, verbose=0)
        accuracies[cached] = float(np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test))
    assert abs(accuracies[True] - accuracies[False]) <= 0.02, accuracies
    assert accuracies[True] > 0.6  # the frozen 0-4 features already separate 5-9


def test_transfer_from_digits_0_4_to_5_9_at_20_per_class(digits_5_to_9):
    """The pre-trained base, fine-tuned through zoo.transfer, reaches >= 90 % held out.

    The full table (5/10/20 per class, from scratch beside it) is benchmarks/transfer_digits.py.
    """
    x_pool, y_pool, x_test, y_test = digits_5_to_9
    x, y = per_class(x_pool, y_pool, 20, seed=0)
    keras.utils.set_random_seed(0)
    model = replace_head(zoo.create("lenet5", weights="digits04", include_top=False), 5, dropout=0.1)
    fine_tune(model, (x, y), epochs=25, freeze_epochs=5, base_lr=1e-2, lr_mult=3, batch_size=16, verbose=0)
    accuracy = float(np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test))
    assert accuracy >= 0.90, accuracy


def test_scratch_baseline_trains_the_same_architecture(digits_5_to_9):
    x_pool, y_pool, x_test, y_test = digits_5_to_9
    x, y = per_class(x_pool, y_pool, 20, seed=0)
    keras.utils.set_random_seed(0)
    scratch = zoo.create("lenet5", weights=None, num_classes=5, head_dropout=0.1)
    fit_one_cycle(scratch, (x, y), epochs=30, lr=3e-3, batch_size=16, verbose=0)
    accuracy = float(np.mean(np.argmax(scratch.predict(x_test, verbose=0), -1) == y_test))
    assert accuracy > 0.8  # a strong baseline, not a strawman


def test_lr_find_sweeps_suggests_restores_and_plots(digits_5_to_9, tmp_path):
    x_pool, y_pool, _, _ = digits_5_to_9
    model = replace_head(zoo.create("lenet5", weights="digits04", include_top=False), 5)
    freeze(model)
    before = [np.array(w) for w in model.weights]
    result = lr_find(model, (x_pool, y_pool), num_steps=60, plot=tmp_path / "lr.png", features=cached_features(model))
    assert len(result.lrs) == len(result.losses) >= 20
    assert all(a < b for a, b in zip(result.lrs, result.lrs[1:]))
    assert 1e-6 < result.suggestion < 1.0
    assert set(result.suggestions) >= {"valley", "minimum"}
    assert (tmp_path / "lr.png").stat().st_size > 1000
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(before, model.weights))


def test_freeze_recompiles_a_compiled_model_so_the_change_takes_effect():
    model = small_bn_net()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = random_images(8)
    freeze(model)
    before = base_state(model)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert all(np.array_equal(before[n], v) for n, v in base_state(model).items())
    assert model.optimizer is not None and model.compiled
