"""`lr_find` for transfer learning: the sweep of `zoo.training.lr_find`, on cached
features when the base is frozen and the data is not augmented."""

from __future__ import annotations

from zoo.training import lr_find as sweep
from zoo.training.data import augmented
from zoo.transfer.features import compute_features, feature_extractor, frozen_base, head_model


def lr_find(model, train, start_lr=1e-7, end_lr=10.0, num_steps=100, batch_size=32,
            cache_features="auto", diverge=4.0, plot=None):
    """Sweep the learning rate over `model` as it is set (frozen or not); suggest one.

    Trains on cached features when the base is frozen and `train` is not augmented
    (see `fine_tune`). The weights are restored afterwards. Arguments and result as
    `zoo.training.lr_find`; `cache_features` is `"auto"`, True or False.
    """
    use_cache = frozen_base(model) and ((not augmented(train)) if cache_features == "auto" else bool(cache_features))
    if use_cache:
        trainer, data = head_model(model), compute_features(feature_extractor(model), train, batch_size)
    else:
        trainer, data = model, train
    return sweep(trainer, data, start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, batch_size=batch_size,
                 diverge=diverge, plot=plot)
