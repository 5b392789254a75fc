"""The character-level text generator: a text file in, a model that writes like it out.

    zoo train text-generation --text tinyshakespeare.txt --minutes 15 --out runs/shakespeare
    zoo generate runs/shakespeare --prompt "ROMEO:" --temperature 0.8 --length 300 --seed 1
    run = zoo.train("text-generation", "tinyshakespeare.txt", minutes=15, out="runs/shakespeare")
    zoo.generate("runs/shakespeare", prompt="ROMEO:", temperature=0.8)

The path: `zoo.data.text_corpus` (the last 10 % held out, random training windows) →
`zoo.create("char_lstm", vocabulary_size=...)` → `zoo.training.fit` (Adam, the held-out
text scored in bits per character every epoch, the best epoch kept) → the run directory:
`model.keras`, `vocabulary.json`, `metrics.json`, `curves.png`, `samples.txt` (a sample
after every epoch), TensorBoard logs.

Generation runs inside a TensorFlow graph — the same function `zoo generate` calls and
the export serves (`prompt`, `temperature`, `length`, `seed` in; `text` out), so a seed
gives the same text locally and from `zoo serve` or TF Serving. Sampling: the softmax of
the logits divided by the temperature (0: always the likeliest character), optionally
only among the `top_k` likeliest. An empty prompt starts the text as if after a line
break (after the vocabulary's first character when the text has no line breaks); a
prompt with a character the model never saw is refused, naming it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import keras

from zoo import io, runs, tasks
from zoo.errors import OptionError, ZooError
from zoo.tasks.base import RUN_DEFAULTS, finish_run, start_run

KIND = "text-generation"
MODEL = "char_lstm"
MODEL_TASK = "text-generation"
MODEL_RANKS = (2, 3)  # character ids in, next-character logits per position out
_TASK = tasks.MANIFEST[KIND]
DESCRIPTION = _TASK.description
VOCABULARY_FILE = "vocabulary.json"
SAMPLES_FILE = "samples.txt"
MAX_LENGTH = 10_000  # characters one request may ask for: a served model must not be held forever
MAX_PROMPT_LENGTH = 10_000  # characters of a prompt: each is one LSTM step, as a generated one is
# Prompt and generated characters one call may cost in all, summed over its instances
# (~0.2 ms each for the default 384-unit model on 2 CPU cores: ~10 s): the work one
# request can start, since a request already running is not stopped when its client leaves.
MAX_REQUEST_CHARACTERS = 50_000
EPOCH_CAP = 1000  # `--minutes` without `--epochs`: the clock stops the run long before this
SIGNATURE_TOP_K = "generate_top_k"

OPTIONS = _TASK.options  # zoo.tasks.MANIFEST: the CLI reads them without importing this module
DEFAULTS = {"epochs": None, "minutes": None, "seq_len": 100, "batch_size": 32, "units": 384, "layers": 1,
            "embedding_dim": 64, "dropout": 0.2, "lr": 5e-3, **RUN_DEFAULTS}
RUN_SETTINGS = ("text", *DEFAULTS)


def bits_per_char(y_true, logits):
    """Cross-entropy in bits: what char-rnn and the compression literature report."""
    import keras

    return keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True) / math.log(2.0)


@dataclass
class CharLSTMRun(runs.Run):
    """A text generator's run: its model, vocabulary, settings and metrics."""

    vocabulary: list = field(default_factory=list)
    _generator: object = field(default=None, repr=False)

    def generate(self, prompt="", temperature=1.0, length=200, seed=0, top_k=0):
        """The prompt followed by `length` generated characters (see `zoo.generate`)."""
        check_generation(self.vocabulary, prompt, temperature, length, top_k)
        if self._generator is None:
            self._generator = generation_function(self.model, self.vocabulary)
        return _run_generator(self._generator, [prompt], temperature, length, seed, top_k)[0]


def load_run(run_dir):
    run_dir = Path(run_dir)
    model, config, metrics = runs.open_run(run_dir, KIND, MODEL_RANKS)
    return CharLSTMRun(path=run_dir, model=model, config=config, metrics=metrics,
                       vocabulary=io.read_json(run_dir / VOCABULARY_FILE, [], expect=list))


def train(text=None, out="runs/char-lstm", resume=False, overwrite=False, verbose="auto", no_tensorboard=False,
          distribute="none", callbacks=(), **options):
    """Train a character-level LSTM on the text file `text`; write the run `out`.

    Args:
        text: path of a UTF-8 text file. The last 10 % is held out and scored.
        out: path. The run directory (never overwritten unasked; see `zoo.train`).
        resume: bool. Continue the interrupted run in `out` from its last finished epoch.
        overwrite: bool. Replace the run in `out`.
        no_tensorboard: bool. Write no TensorBoard logs.
        callbacks: more Keras callbacks (Python API only).
        verbose: `"auto"`, 0, 1 or 2.
        **options: `epochs` (20), `minutes` (None: training time allowed, counted over
            resumes), `seq_len` (100), `batch_size` (32), `units` (384), `layers` (1),
            `embedding_dim` (64), `dropout` (0.2), `lr` (5e-3), `seed` (0), `precision`,
            `early_stopping`.

    Returns:
        `CharLSTMRun` of the finished run.
    """
    import keras

    from zoo import models
    from zoo.data.text import text_corpus
    from zoo.training import Defaults, fit

    out = Path(out)
    given = {"text": None if text is None else str(text), **options}
    started = start_run(KIND, out, given, defaults=DEFAULTS, keys=RUN_SETTINGS, required=("text",), resume=resume,
                        overwrite=overwrite, distribute=distribute, tensorboard=not no_tensorboard)
    config, resuming = started.config, started.resuming
    for key in ("seq_len", "batch_size", "units", "layers", "embedding_dim"):
        if int(config[key]) < 1:
            raise OptionError(f"`{key}` must be a positive integer. Received: {key}={config[key]!r}")
    if config["minutes"] is not None and not config["minutes"] > 0:
        raise OptionError(f"`minutes` must be positive. Received: minutes={config['minutes']!r}")
    epochs = config["epochs"] or (EPOCH_CAP if config["minutes"] else 20)

    vocabulary = io.read_json(out / VOCABULARY_FILE) if resuming else None
    corpus = text_corpus(config["text"], seq_len=config["seq_len"], batch_size=config["batch_size"],
                         seed=config["seed"], vocabulary=vocabulary)
    if resuming and config.get("text_sha256") not in (None, corpus.sha256):
        raise runs.RunError(f"--resume continues the run as it was started, but {config['text']} has changed "
                            "since (its sha256 differs). Pass --overwrite to start a new run on it.")
    if not resuming:
        started.write_config(KIND, text_sha256=corpus.sha256, num_train_chars=corpus.num_train_chars,
                             num_val_chars=corpus.num_val_chars, vocabulary_size=len(corpus.vocabulary))
        io.write_json(out / VOCABULARY_FILE, corpus.vocabulary)

    with started.settings.building():
        model = models.create(MODEL, vocabulary_size=len(corpus.vocabulary), units=config["units"],
                              num_layers=config["layers"], embedding_dim=config["embedding_dim"],
                              dropout=config["dropout"])
    if verbose:
        print(f"{corpus.num_train_chars:,} training and {corpus.num_val_chars:,} held-out characters, "
              f"vocabulary {len(corpus.vocabulary)}; {corpus.steps_per_epoch} batches per epoch", file=sys.stderr)
    result = fit(
        model, corpus.train, corpus.val, epochs=epochs, steps_per_epoch=corpus.steps_per_epoch,
        defaults=Defaults(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=(keras.metrics.MeanMetricWrapper(bits_per_char, name="bits_per_char"),),
                          # Gradient clipping: an LSTM's gradients spike now and then (char-rnn clips at 5).
                          optimizer=keras.optimizers.Adam(config["lr"], clipnorm=5.0),
                          monitor="val_loss", mode="min", train_monitor="loss"),
        settings=started.settings,
        tracking=started.tracking(minutes=config["minutes"], anneal_from=config["lr"] if config["minutes"] else None),
        callbacks=[sample_writer(out / SAMPLES_FILE, corpus.vocabulary), *callbacks], verbose=verbose,
    )
    history = result.history
    best = min((h for h in history if "val_bits_per_char" in h), key=lambda h: h["val_loss"], default={})
    finish_run(out, model, result, verbose=verbose, plot_metrics=("loss", "bits_per_char"), extra={
        "val_bits_per_char": best.get("val_bits_per_char"),
        "val_nats_per_char": best.get("val_loss"),
        "unigram_bits_per_char": corpus.unigram_bits,
    })
    run = load_run(out)
    if verbose and best:
        print(f"held-out: {best['val_bits_per_char']:.3f} bits/char ({best['val_loss']:.3f} nats) at epoch "
              f"{best['epoch']}; a character-unigram model: {run.metrics['unigram_bits_per_char']:.3f} bits/char",
              file=sys.stderr)
    return run


def check_generation(vocabulary, prompt, temperature, length, top_k):
    """The checks a served request gets in the graph, as one clear Python error."""
    if not isinstance(prompt, str):
        raise OptionError(f"`prompt` must be a str. Received: prompt={prompt!r}")
    unseen = sorted(set(prompt) - set(vocabulary))
    if unseen:
        raise OptionError(f"`prompt` has characters the model never saw in its text: {''.join(unseen)!r}. "
                          f"Received: prompt={prompt!r}")
    if len(prompt) > MAX_PROMPT_LENGTH:
        raise OptionError(f"`prompt` must be at most {MAX_PROMPT_LENGTH} characters. "
                          f"Received: a prompt of {len(prompt)} characters")
    if not temperature >= 0:
        raise OptionError(f"`temperature` must be >= 0 (0: the likeliest character). Received: temperature={temperature}")
    if not 1 <= int(length) <= MAX_LENGTH:
        raise OptionError(f"`length` must be from 1 to {MAX_LENGTH}. Received: length={length}")
    if int(top_k) < 0:
        raise OptionError(f"`top_k` must be >= 0 (0: every character). Received: top_k={top_k}")
    if len(prompt) + int(length) > MAX_REQUEST_CHARACTERS:
        raise OptionError(_BUDGET.format(len(prompt) + int(length)))


# The graph's refusals (generation_function) word them as check_generation does.
_BUDGET = (f"a request may read and write at most {MAX_REQUEST_CHARACTERS} characters in all (prompt "
           "characters plus length, summed over its instances). Received: {}")


def generate(run, prompt="", temperature=1.0, length=200, seed=0, top_k=0):
    """Write text with a trained char-LSTM: the prompt and `length` characters after it.

    Args:
        run: a run directory written by `zoo train text-generation`, or its `CharLSTMRun`.
        prompt: str. Where the text starts, at most 10,000 characters, each in the
            model's vocabulary. Defaults to `""` (as if after a line break).
        temperature: float. Softmax temperature: lower is safer and more repetitive,
            0 always takes the likeliest character. Defaults to `1.0`.
        length: int. Characters to generate, from 1 to 10,000. Defaults to `200`.
        seed: int. The same seed gives the same text (here and from the export).
        top_k: int. Sample only among the k likeliest characters; 0 for all. Defaults to `0`.

    Returns:
        str.
    """
    if not isinstance(run, CharLSTMRun):
        from zoo.tasks import load_run as load_any

        run = load_any(run)
        if not isinstance(run, CharLSTMRun):
            raise ZooError(f"{run.path} is a {run.kind} run, not a text-generation run: it cannot generate text.")
    return run.generate(prompt, temperature=temperature, length=length, seed=seed, top_k=top_k)


def _run_generator(function, prompts, temperature, length, seed, top_k):
    import tensorflow as tf

    n = len(prompts)
    texts = function(tf.constant(prompts, tf.string), tf.fill([n], tf.constant(float(temperature), tf.float32)),
                     tf.fill([n], tf.constant(int(length), tf.int32)), tf.fill([n], tf.constant(int(seed), tf.int64)),
                     tf.fill([n], tf.constant(int(top_k), tf.int32)))
    return [t.decode("utf-8") for t in texts.numpy()]


def generation_function(model, vocabulary):
    """A `tf.function` writing text with `model` inside the graph, for a batch of requests:
    `(prompt string [N], temperature float32 [N], length int32 [N], seed int64 [N],
    top_k int32 [N]) -> text string [N]` (each prompt followed by its characters).

    Each request runs on its own (prompts differ in length): the prompt primes the LSTM
    states one character at a time, then characters are drawn one at a time with
    `stateless_categorical` keyed by `(seed, position)`, so a seed always gives the same
    text. What `check_generation` refuses fails the whole call (InvalidArgument, a 400
    from a server) before any work starts: a character outside the vocabulary, a
    temperature below 0 or NaN, a length outside 1..`MAX_LENGTH`, a top_k below 0, a
    prompt over `MAX_PROMPT_LENGTH` characters, and more than `MAX_REQUEST_CHARACTERS`
    prompt and generated characters in all — in `zoo generate`, `zoo serve` and TF
    Serving alike, since the checks are in the graph.
    """
    import tensorflow as tf

    from zoo.architectures.char_lstm import initial_states, step

    codepoints = tf.constant([ord(c) for c in vocabulary], tf.int32)
    start_id = vocabulary.index("\n") if "\n" in vocabulary else 0
    size = len(vocabulary)

    def one(request):
        prompt, temperature, length, seed, top_k = request
        chars = tf.strings.unicode_decode(prompt, "UTF-8")
        match = tf.equal(chars[:, None], codepoints[None, :])
        check = tf.debugging.Assert(tf.reduce_all(tf.reduce_any(match, axis=1)),
                                    ["`prompt` has characters the model never saw in its text"])
        with tf.control_dependencies([check]):
            ids = tf.argmax(match, axis=1, output_type=tf.int32)
        ids = tf.cond(tf.size(ids) > 0, lambda: ids, lambda: tf.constant([start_id], tf.int32))
        count = tf.size(ids)
        k = tf.where(top_k > 0, tf.minimum(top_k, size), size)

        def prime(i, *states):
            _, new = step(model, ids[i][None], list(states))
            return (i + 1, *new)

        states = tf.while_loop(lambda i, *_: i < count - 1, prime, (tf.constant(0), *initial_states(model, 1)))[1:]

        def draw(t, token, drawn, *states):
            logits, new = step(model, token[None], list(states))
            logits = tf.cast(logits[0], tf.float32)
            kth = tf.math.top_k(logits, k).values[-1]
            logits = tf.where(logits < kth, tf.fill(tf.shape(logits), -1e9), logits)
            sampled = tf.random.stateless_categorical(
                logits[None] / tf.maximum(temperature, 1e-6), 1, seed=tf.stack([seed, tf.cast(t, tf.int64)]),
                dtype=tf.int32)[0, 0]
            following = tf.where(temperature > 0, sampled, tf.argmax(logits, output_type=tf.int32))
            return (t + 1, following, drawn.write(t, following), *new)

        drawn = tf.TensorArray(tf.int32, size=length)
        drawn = tf.while_loop(lambda t, *_: t < length, draw,
                              (tf.constant(0), ids[count - 1], drawn, *states))[2]
        written = tf.strings.unicode_encode(tf.gather(codepoints, drawn.stack()), "UTF-8")
        return tf.strings.join([prompt, written])

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name="prompt"), tf.TensorSpec([None], tf.float32, name="temperature"),
        tf.TensorSpec([None], tf.int32, name="length"), tf.TensorSpec([None], tf.int64, name="seed"),
        tf.TensorSpec([None], tf.int32, name="top_k")])
    def generate_text(prompt, temperature, length, seed, top_k):
        with tf.control_dependencies(_refusals(prompt, temperature, length, top_k)):  # before any work
            return tf.map_fn(one, (prompt, temperature, length, seed, top_k), fn_output_signature=tf.string)

    return generate_text


def _refusals(prompt, temperature, length, top_k):
    """Graph function: the assertions of `check_generation` over a batch of requests,
    each failing with one line worded as the Python check words it (the offending
    values after "Received:")."""
    import tensorflow as tf

    def refuse_unless(ok, template, values):
        return tf.debugging.Assert(tf.reduce_all(ok), [tf.strings.format(
            template, tf.boolean_mask(values, tf.logical_not(ok)), summarize=3)])

    # Counted without decoding: a 10 MiB prompt is refused before it costs anything.
    chars = tf.strings.length(prompt, unit="UTF8_CHAR")
    short = tf.logical_and(chars <= MAX_PROMPT_LENGTH, tf.strings.length(prompt) <= 4 * MAX_PROMPT_LENGTH)
    in_range = tf.logical_and(length >= 1, length <= MAX_LENGTH)
    total = tf.reduce_sum(tf.cast(chars, tf.int64)) + tf.reduce_sum(tf.cast(length, tf.int64))
    return [
        refuse_unless(short, f"`prompt` must be at most {MAX_PROMPT_LENGTH} characters. "
                      "Received: a prompt of {} characters", chars),
        refuse_unless(temperature >= 0, "`temperature` must be >= 0 (0: the likeliest character). "
                      "Received: temperature={}", temperature),
        refuse_unless(in_range, f"`length` must be from 1 to {MAX_LENGTH}. Received: length={{}}", length),
        refuse_unless(top_k >= 0, "`top_k` must be >= 0 (0: every character). Received: top_k={}", top_k),
        tf.debugging.Assert(total <= MAX_REQUEST_CHARACTERS, [tf.strings.format(_BUDGET, total)]),
    ]


def signatures(source, top_k=5, classes=None):
    """The export's signatures (`zoo.tasks`' contract): `serving_default` (prompt,
    temperature, length, seed → text) and `generate_top_k` (the same and top_k). A bare
    model (no run, so no vocabulary) exports `serving_default` on its token ids.
    `top_k` and `classes` (a classifier's) play no part."""
    import tensorflow as tf

    from zoo.tasks.export import model_signatures

    if not isinstance(source, CharLSTMRun):
        return model_signatures(source)
    run = source
    generate_text = generation_function(run.model, run.vocabulary)
    inputs = [tf.TensorSpec([None], tf.string, name="prompt"), tf.TensorSpec([None], tf.float32, name="temperature"),
              tf.TensorSpec([None], tf.int32, name="length"), tf.TensorSpec([None], tf.int64, name="seed")]

    @tf.function(input_signature=inputs)
    def serve(prompt, temperature, length, seed):
        return {"text": generate_text(prompt, temperature, length, seed, tf.zeros_like(length))}

    @tf.function(input_signature=[*inputs, tf.TensorSpec([None], tf.int32, name="top_k")])
    def serve_top_k(prompt, temperature, length, seed, top_k):
        return {"text": generate_text(prompt, temperature, length, seed, top_k)}

    names = ["prompt", "temperature", "length", "seed"]
    endpoints = {"serving_default": (serve, {"inputs": names, "outputs": ["text"]}),
                 SIGNATURE_TOP_K: (serve_top_k, {"inputs": [*names, "top_k"], "outputs": ["text"]})}
    return endpoints, {}


def portable(source, classes=None):
    """The one-file export (`zoo.tasks`' contract): one step of the LSTM, which a
    runtime loops to write text (the converters cannot take the SavedModel's in-graph
    generation: string ops and a sampling loop). `token_ids` int32 `[N]` (indices into
    `vocabulary.json`, written beside the file) and `states` float32 `[N, S]` (zeros to
    start; S = 2 × the units of every LSTM layer, its h and c in turn) → `logits`
    float32 `[N, V]` for the next character and `new_states`, fed back as `states`.
    A bare model (no vocabulary): its own forward pass over a sequence."""
    import json

    import tensorflow as tf

    from zoo.architectures.char_lstm import recurrent_layers, step
    from zoo.tasks.export import Portable, model_portable

    if not isinstance(source, CharLSTMRun):
        return model_portable(source)
    model = source.model
    widths = [int(layer.units) for layer in recurrent_layers(model) for _ in "hc"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="token_ids"),
                                  tf.TensorSpec([None, sum(widths)], tf.float32, name="states")])
    def one_step(token_ids, states):
        logits, new = step(model, token_ids, tf.split(states, widths, axis=1))
        return {"logits": tf.cast(logits, tf.float32), "new_states": tf.concat(new, axis=1)}

    vocabulary = json.dumps(list(source.vocabulary), ensure_ascii=False)
    return Portable(function=one_step, model=model, files={VOCABULARY_FILE: vocabulary + "\n"},
                    metadata={"vocabulary": vocabulary, "state_size": str(sum(widths)),
                              "loop": "feed each character's id with the states, sample the next from the logits"})


def sample_writer(path, vocabulary, length=300, temperature=0.8):
    """A callback that, after every epoch, appends `length` characters at `temperature`
    (seed 0) to `samples.txt`: how the writing improves, readable while the run goes on."""
    return SampleWriter(path, vocabulary, length=length, temperature=temperature)


class SampleWriter(keras.callbacks.Callback):
    """After every epoch, a sample of the model's writing into `path` (see `sample_writer`)."""

    def __init__(self, path, vocabulary, length=300, temperature=0.8):
        super().__init__()
        self.path = Path(path)
        self.vocabulary = vocabulary
        self.length = length
        self.temperature = temperature
        self._function = None

    def on_epoch_end(self, epoch, logs=None):
        if self._function is None:
            self._function = generation_function(self.model, self.vocabulary)
        text = _run_generator(self._function, [""], self.temperature, self.length, 0, 0)[0]
        score = (logs or {}).get("val_bits_per_char")
        marker = f"=== epoch {epoch + 1}"
        header = marker + (f", held-out {score:.3f} bits/char" if score is not None else "")
        earlier = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
        # A resumed run rewrites the epoch it repeats rather than listing it twice.
        kept = earlier.split(marker)[0]
        io.write_text(self.path, f"{kept}{header} ===\n{text}\n\n")
