"""Issue 25: the training recipe's options on a real folder (scikit-learn's handwritten
digits, LeNet-5 with its shipped weights): where the validation images come from
(`--val-split`, `--val-dir`) and the per-class report at the end of a run."""

import json
import os

import numpy as np
import pytest

from helpers import forked_zoo
from helpers.digit_folders import write_folder

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
CLASSES = (1, 4, 7)


def finetune(*args):
    return forked_zoo.run(["finetune", *args, "--model", "lenet5", "--epochs", 1, "--freeze-epochs", 1, "--lr",
                           "1e-2", "--batch-size", 16, "--no-tensorboard"], env=ENV, timeout=600)


@pytest.fixture
def folders(tmp_path, digits):
    x_train, x_test, y_train, y_test = digits
    train = write_folder(tmp_path / "train", x_train, y_train, classes=CLASSES, per_class=40)
    val = write_folder(tmp_path / "val", x_test, y_test, classes=CLASSES, per_class=10)
    return train, val


def test_val_split_holds_out_that_fraction_of_each_class(folders, tmp_path):
    train, _ = folders
    done = finetune(train, "--val-split", "0.25", "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (config["num_train"], config["num_val"], config["val_split"]) == (90, 30, 0.25)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert np.sum(metrics["confusion_matrix"]) == 30 and sorted(np.sum(metrics["confusion_matrix"], 1)) == [10] * 3


def test_val_dir_is_the_validation_data_and_the_report_matches_scikit_learn(folders, tmp_path, digits):
    from sklearn.metrics import precision_recall_fscore_support

    train, val = folders
    done = finetune(train, "--val-dir", val, "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (config["num_train"], config["num_val"], config["val_dir"]) == (120, 30, str(val))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum() == 30
    # The report against scikit-learn's, from the same predictions (the matrix's cells).
    truth = np.repeat(np.arange(3), matrix.sum(1))
    predicted = np.concatenate([np.repeat(np.arange(3), row) for row in matrix])
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    names = [f"digit_{c}" for c in CLASSES]
    for i, name in enumerate(names):
        scores = metrics["per_class"][name]
        assert scores["support"] == support[i] == 10
        np.testing.assert_allclose([scores["precision"], scores["recall"], scores["f1"]],
                                   [precision[i], recall[i], f1[i]], atol=1e-12)
    assert metrics["macro_f1"] == pytest.approx(np.mean(f1))
    # The printed report: a row per class, and the macro mean.
    report = done.stderr[done.stderr.index("validation images, per class:"):].splitlines()
    assert report[1].split() == ["class", "precision", "recall", "f1", "images"]
    assert [line.split()[0] for line in report[2:5]] == names and report[5].startswith("(macro mean)")


def test_a_val_dir_with_a_class_the_training_folder_lacks_is_one_line(folders, tmp_path):
    train, val = folders
    (val / "digit_9").mkdir()
    (val / "digit_1" / "0.png").rename(val / "digit_9" / "0.png")
    done = finetune(train, "--val-dir", val, "--out", tmp_path / "run")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "'digit_9' not among the training classes" in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, named", [(["--val-split", "1.5"], "--val-split is a fraction"),
                                         (["--val-split", "0.3", "--val-dir", "VAL"], "give one")])
def test_val_options_out_of_range_or_together_are_refused_in_one_line(folders, tmp_path, args, named):
    train, val = folders
    done = finetune(train, *[str(val) if a == "VAL" else a for a in args], "--out", tmp_path / "run")
    assert done.returncode != 0 and named in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ label smoothing
def test_smoothed_loss_equals_keras_categorical_crossentropy_with_label_smoothing():
    import keras

    from zoo.training.losses import sparse_crossentropy

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(5), size=16).astype("float32")
    ids = rng.integers(0, 5, size=16)
    ours = sparse_crossentropy(0.1)(ids, probabilities)
    reference = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(5)[ids], probabilities)
    assert float(ours) == pytest.approx(float(reference), rel=1e-5)
    assert sparse_crossentropy(0.0) == "sparse_categorical_crossentropy"


def test_label_smoothing_makes_the_run_less_sure_of_itself(folders, tmp_path):
    """Trained towards 0.8 on the true class (ε = 0.3, 3 classes: 0.8 + 0.1 + 0.1), the
    model's top probability on its training images stays at or below 0.8; without
    smoothing the same run is surer (0.88 and 0.75 when this was written)."""
    import zoo

    train, _ = folders
    sure = {}
    for smoothing in (0.0, 0.3):
        out = tmp_path / f"run-{smoothing}"
        done = finetune(train, "--label-smoothing", smoothing, "--out", out)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads((out / "run.json").read_text())["label_smoothing"] == smoothing
        images = sorted(train.rglob("*.png"))[:30]
        sure[smoothing] = np.mean([r["predictions"][0]["probability"] for r in zoo.load_run(out).predict(images)])
    print(sure)
    assert sure[0.3] <= 0.82 and sure[0.0] - sure[0.3] >= 0.05


# -------------------------------------------------------------------- class weights
def test_balanced_class_weights_weigh_a_rare_class_up_and_change_the_loss(tmp_path, digits):
    x_train, _, y_train, _ = digits
    common = write_folder(tmp_path / "data", x_train, y_train, classes=(1,), per_class=40)
    write_folder(common, x_train, y_train, classes=(7,), per_class=8)  # 32 + 6 train, 8 + 2 held out
    losses = {}
    for weighting in ("none", "balanced"):
        out = tmp_path / weighting
        done = finetune(common, "--out", out, *(["--class-weight", "balanced"] if weighting == "balanced" else []))
        assert done.returncode == 0, done.stderr[-3000:]
        metrics = json.loads((out / "metrics.json").read_text())
        losses[weighting] = metrics["history"][0]["loss"]
    assert json.loads((tmp_path / "balanced" / "run.json").read_text())["class_weight"] == "balanced"
    weights = metrics["class_weight"]
    assert weights == pytest.approx({"digit_1": 38 / (2 * 32), "digit_7": 38 / (2 * 6)})  # n / (K * n_c)
    assert losses["none"] != pytest.approx(losses["balanced"], rel=1e-3)
    bad = finetune(common, "--class-weight", "inverse", "--out", tmp_path / "bad")
    assert bad.returncode != 0 and "--class-weight takes 'balanced'" in bad.stderr


# ------------------------------------------------------------- test-time augmentation
def test_tta_averages_the_flip_and_the_five_crops_it_names(tmp_path, digits):
    """`run.predict(..., tta=True)` against the views made here: the image, its mirror
    image and 90 % crops (centre, four corners) scaled back, each through the model."""
    import zoo
    from PIL import Image

    from zoo.tasks.classify import TTA_VIEWS

    assert TTA_VIEWS == ("original", "flip", "center", "top_left", "top_right", "bottom_left", "bottom_right")
    x_train, _, y_train, _ = digits
    model = zoo.create("lenet5")
    image = x_train[y_train == 7][3]  # uint8 28 x 28 x 3
    side, crop = 28, round(28 * 0.9)
    views = [image, image[:, ::-1]]
    for top, left in [((side - crop) // 2, (side - crop) // 2), (0, 0), (0, side - crop), (side - crop, 0),
                      (side - crop, side - crop)]:
        views.append(np.asarray(Image.fromarray(image[top:top + crop, left:left + crop]).resize((side, side),
                                                                                            Image.BILINEAR)))
    expected = np.asarray(model.predict(np.stack(views), verbose=0)).mean(axis=0)
    (row,) = zoo.classify([image], model=model, labels=[str(d) for d in range(10)], top=10, tta=True)
    got = np.zeros(10)
    for p in row["predictions"]:
        got[p["class_id"]] = p["probability"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    (plain,) = zoo.classify([image], model=model, labels=[str(d) for d in range(10)], top=10)
    assert {p["class_id"]: p["probability"] for p in plain["predictions"]} != pytest.approx(
        {i: float(v) for i, v in enumerate(got)})  # the views made a difference
    path = tmp_path / "seven.png"
    Image.fromarray(image).save(path)
    cli = forked_zoo.run(["classify", path, "--model", "lenet5"], env=ENV)  # plain classify still works
    assert cli.returncode == 0, cli.stderr


# ------------------------------------------------------------------ MixUp and CutMix
def _batch(digits, size=16):
    import tensorflow as tf

    x_train, _, y_train, _ = digits
    return tf.data.Dataset.from_tensor_slices((x_train[:size], y_train[:size].astype("int32"))).batch(size), \
        x_train[:size], y_train[:size]


def test_mixup_blends_images_and_labels_by_the_same_weight(digits):
    from zoo.data import mix_batches

    dataset, images, labels = _batch(digits)
    mixed, soft = next(iter(mix_batches(dataset, 10, mixup=0.4, seed=3)))
    mixed, soft = np.asarray(mixed), np.asarray(soft)
    assert mixed.dtype == np.uint8 and soft.shape == (16, 10)
    np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-6)
    # One λ for the batch: each row is λ·a + (1 - λ)·b for its own a and some b of the batch.
    two = [i for i in range(16) if np.count_nonzero(soft[i] > 1e-6) == 2]  # mixed with another class
    shares = {round(float(soft[i, labels[i]]), 5) for i in two}
    assert len(two) > 0 and len(shares) == 1  # the own class's share: λ, the same for the whole batch
    (lam,) = shares
    blended = 0
    for i in range(16):
        candidates = [j for j in range(16)
                      if np.abs(mixed[i].astype(float) - (lam * images[i] + (1 - lam) * images[j])).max() <= 1.0]
        assert candidates, i  # the image is a blend of its own and another of the batch
        blended += labels[candidates[0]] != labels[i]
    assert blended > 0 and 0 < lam < 1
    assert not np.array_equal(mixed, images)


def test_cutmix_pastes_a_box_and_weighs_the_labels_by_its_area(digits):
    from zoo.data import mix_batches

    dataset, images, labels = _batch(digits)
    mixed, soft = next(iter(mix_batches(dataset, 10, cutmix=1.0, seed=5)))
    mixed, soft = np.asarray(mixed), np.asarray(soft)
    changed = np.any(mixed != images, axis=-1)  # (16, 28, 28): the pasted pixels that differ
    box = np.zeros((28, 28), bool)
    union = changed.any(0)
    ys, xs = np.nonzero(union)
    box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True  # one box for the whole batch
    assert union.sum() > 0 and not np.any(changed & ~box)  # nothing changed outside the box
    area = box.mean()
    for i in range(16):
        own = soft[i, labels[i]]
        assert own == pytest.approx(1 - area, abs=1e-5) or own == pytest.approx(1.0, abs=1e-5)  # b of its own class


def test_a_run_with_mixup_and_cutmix_trains_and_records_them(folders, tmp_path):
    train, _ = folders
    done = finetune(train, "--mixup", "0.2", "--cutmix", "1.0", "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (config["mixup"], config["cutmix"]) == (0.2, 1.0)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["cached_features"] is False  # mixed batches differ every epoch
    assert all("accuracy" in h and "val_accuracy" in h for h in metrics["history"])
    assert metrics["val_accuracy"] >= 0.6
    bad = finetune(train, "--mixup", "-1", "--out", tmp_path / "bad")
    assert bad.returncode != 0 and "--mixup is the alpha" in bad.stderr


# ----------------------------------------------------------------------------- EMA
def test_weight_average_follows_the_formula_step_by_step(digits):
    """`WeightAverage` against the average computed here from the weights after each
    step: a·d + w·(1 - d), d = min(decay, (1 + t) / (10 + t))."""
    import keras

    from zoo.training.ema import WeightAverage

    x_train, _, y_train, _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seen = [np.array(w, dtype="float64") for w in model.get_weights()]
    expected = [w.copy() for w in seen]

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            t = len(steps) + 1
            d = min(0.95, (1 + t) / (10 + t))
            steps.append(t)
            for e, w in zip(expected, self.model.get_weights()):
                e *= d
                e += (1 - d) * w

    steps = []
    average = WeightAverage(0.95)
    model.fit(x_train[:64].astype("float32") / 255, y_train[:64], batch_size=16, epochs=2, verbose=0,
              callbacks=[Record(), average])
    assert len(steps) == 8
    for got, want in zip(average.average, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert not np.allclose(average.average[0], model.get_weights()[0])  # an average, not the last weights


def test_ema_run_keeps_the_better_weights_and_writes_the_average_beside(folders, tmp_path):
    import keras

    import zoo

    train, _ = folders
    out = tmp_path / "run"
    done = forked_zoo.run(["finetune", train, "--model", "lenet5", "--weights", "none", "--epochs", 4, "--lr", "1e-2",
                           "--batch-size", 16, "--ema", "0.9", "--out", out, "--no-tensorboard"], env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    ema = metrics["ema"]
    assert ema["decay"] == 0.9 and ema["weights"] == "ema.weights.h5" and isinstance(ema["kept"], bool)
    assert json.loads((out / "run.json").read_text())["ema"] == 0.9
    run = zoo.load_run(out)
    averaged = keras.models.clone_model(run.model)
    averaged.load_weights(out / "ema.weights.h5")
    same = all(np.array_equal(a, b) for a, b in zip(averaged.get_weights(), run.model.get_weights()))
    assert same == ema["kept"]  # model.keras holds the average exactly when it was kept
    assert metrics["val_accuracy"] == pytest.approx(max(ema["val_accuracy"], ema["model_val_accuracy"]))
    bad = finetune(train, "--ema", "1.5", "--out", tmp_path / "bad")
    assert bad.returncode != 0 and "--ema is a decay" in bad.stderr


# ------------------------------------------------------------------------ zoo show
def test_zoo_show_writes_a_grid_of_mixed_training_images_with_their_labels(folders, tmp_path):
    from PIL import Image

    train, _ = folders
    out = tmp_path / "batch.png"
    done = forked_zoo.run(["show", train, "--n", "8", "--image-size", "28", "--mixup", "0.4", "--out", out], env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"wrote {out}" in done.stdout
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape[0] > 200 and picture.shape[1] > 400 and picture.std() > 20  # a grid, not a blank
    bad = forked_zoo.run(["show", train, "--n", "0", "--out", tmp_path / "none.png"], env=ENV)
    assert bad.returncode != 0 and "1 to 256" in bad.stderr and not (tmp_path / "none.png").exists()


def test_show_titles_soft_labels_with_each_class_share(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from zoo.plots import plot_batch

    images = np.zeros((2, 8, 8, 3), "uint8")
    labels = np.array([[0.7, 0.3, 0.0], [0.0, 0.0, 1.0]])
    import matplotlib.pyplot as plt

    titles = []
    original = plt.Axes.set_title
    try:
        plt.Axes.set_title = lambda self, text, **kw: titles.append(text) or original(self, text, **kw)
        plot_batch(images, labels, ["cat", "dog", "cup"], tmp_path / "b.png")
    finally:
        plt.Axes.set_title = original
    assert titles == ["cat 0.70 / dog 0.30", "cup 1.00"]
