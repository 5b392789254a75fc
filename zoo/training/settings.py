"""How a training runs on this machine, decided in one place: `Settings`.

Precision, distribution strategy, batches per compiled call and XLA are settled here,
once per run, and recorded in run.json (`Settings.record`); `zoo.training.fit` only
applies what it is handed. Each has an `"auto"` that picks the fast choice for the
hardware and an off switch (README, "Fast by default").

    settings = Settings(precision="auto", strategy=zoo.training.distribute.strategy("mirrored"))
    with settings.building():           # layers take the policy, variables the strategy
        model = build()
    fit(model, data, settings=settings)
"""

from __future__ import annotations

import contextlib
import dataclasses

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def resolve_precision(policy="auto", float16=True):
    """The policy `"auto"` means on this machine, or `policy` itself, checked.

    `"auto"` is `mixed_bfloat16` where the hardware computes in bfloat16 (NVIDIA GPUs
    of compute capability 8.0 and later, TPUs), `mixed_float16` on older NVIDIA GPUs
    (Keras adds loss scaling; `float16=False` for models that cannot take it gets
    float32 there), and `float32` on CPUs, where mixed precision is slower. The off
    switch is `precision="float32"` (`--precision float32`).
    """
    policy = policy or "auto"
    if policy not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}. Received: precision={policy!r}")
    if policy != "auto":
        return policy
    from zoo.training.distribute import accelerator

    kind, capability = accelerator()
    if kind == "tpu" or (kind == "gpu" and capability is not None and capability >= (8, 0)):
        return "mixed_bfloat16"
    if kind == "gpu":
        return "mixed_float16" if float16 else "float32"
    return "float32"


def resolve_steps_per_execution(value, batches_per_epoch=None):
    """`"auto"`: 8 batches per compiled call on a GPU or TPU, where handing control back
    to Python after every small step leaves the device idle, at most one epoch's
    batches; 1 on a CPU, where it buys nothing and callbacks see every batch. The off
    switch is `steps_per_execution=1`."""
    if value != "auto":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`steps_per_execution` must be a positive int or 'auto'. "
                             f"Received: steps_per_execution={value!r}")
        return value
    from zoo.training.distribute import accelerator

    if accelerator()[0] == "cpu":
        return 1
    return max(1, min(8, batches_per_epoch or 8))


def strategy_scope(strategy):
    """The scope models are built and compiled in: a `tf.distribute` strategy's, or none."""
    if strategy is None:
        return contextlib.nullcontext()
    scope = getattr(strategy, "scope", None)
    if scope is None:
        raise ValueError(f"`strategy` must have a `scope()` (a tf.distribute strategy). Received: strategy={strategy!r}")
    return scope()


@contextlib.contextmanager
def precision(policy="auto"):
    """Build models under a mixed-precision policy (the one switch for it).

    Layers take their dtype policy when they are created, so the model must be built
    inside this block; `fit` then compiles it as usual (Keras wraps the optimizer in a
    `LossScaleOptimizer` under `mixed_float16` by itself). zoo's heads keep a float32
    softmax, so probabilities still sum to one. `"auto"`: see `resolve_precision`.
    """
    import keras

    policy = resolve_precision(policy)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How a run trains on this machine.

    Attributes:
        precision: str. One of `PRECISIONS`; `"auto"` is settled by `resolved()`.
        strategy: a `zoo.training.distribute.strategy(...)` (anything with `scope()`) or None
            for one device. The batch size a run is given is then the global batch.
        steps_per_execution: int or `"auto"` (see `resolve_steps_per_execution`).
        jit_compile: `"auto"`, True or False: XLA, as `keras.Model.compile` takes it.
        float16: bool. False for a model that cannot train in float16 (a GAN):
            `"auto"` then never picks `mixed_float16`.
    """

    precision: str = "auto"
    strategy: object = None
    steps_per_execution: object = "auto"
    jit_compile: object = "auto"
    float16: bool = True

    @classmethod
    def for_run(cls, config, distribute="none", float16=True):
        """The settings a task's run config asks for, with the strategy `distribute` names."""
        from zoo.training.distribute import strategy as make_strategy

        # The steps per execution stay "auto" until `fit` knows the epoch's length.
        return cls(precision=resolve_precision(config.get("precision") or "auto", float16),
                   strategy=make_strategy(distribute), float16=float16)

    def resolved(self, batches_per_epoch=None):
        """These settings as `fit` applies them: every `"auto"` settled for this machine
        (the steps per execution at most one epoch of `batches_per_epoch`, when known)."""
        return dataclasses.replace(
            self, precision=resolve_precision(self.precision, self.float16),
            steps_per_execution=resolve_steps_per_execution(self.steps_per_execution, batches_per_epoch))

    @contextlib.contextmanager
    def building(self):
        """Where a model is built: under the precision policy, in the strategy's scope."""
        with precision(resolve_precision(self.precision, self.float16)), strategy_scope(self.strategy):
            yield self

    def scope(self):
        """The strategy's scope (compiling, optimizers), or nothing for one device."""
        return strategy_scope(self.strategy)

    def record(self):
        """What run.json records of these settings."""
        from zoo.training.distribute import replicas

        return {"precision": self.precision, "replicas": replicas(self.strategy) if self.strategy else 1,
                "steps_per_execution": self.steps_per_execution, "jit_compile": self.jit_compile}
