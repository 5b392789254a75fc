"""A text corpus as tf.data windows of character ids, for the character language model.

    corpus = zoo.data.text_corpus("tinyshakespeare.txt", seq_len=100, batch_size=64)
    model.fit(corpus.train, steps_per_epoch=corpus.steps_per_epoch, validation_data=corpus.val)

The last 10 % of the text is held out (the split char-rnn and nanoGPT use), cut into
consecutive windows, and scored every epoch. Training windows start at random places
in the first 90 % (nanoGPT's sampling), so an epoch is "as many characters as the
training text holds", not one fixed tiling of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.errors import DataError

HELD_OUT = 0.1


@dataclass
class TextCorpus:
    """Training and held-out batches `(x, y)`: int32 `(batch, seq_len)`, `y` the next
    character of each position of `x`.

    Attributes:
        train: an endless `tf.data.Dataset`; fit it with `steps_per_epoch`.
        val: a finite `tf.data.Dataset` over all of the held-out text.
        vocabulary: list of str. Characters, sorted; an id is an index here.
        steps_per_epoch: int. Batches in one epoch (the training text's characters).
        sha256: str. Of the corpus file's bytes (a resumed run checks it).
        unigram_bits: float. Held-out bits per character of the training text's
            character frequencies (add-one): the floor any model that learned
            something must beat.
    """

    train: object
    val: object
    vocabulary: list
    steps_per_epoch: int
    num_train_chars: int
    num_val_chars: int
    sha256: str
    unigram_bits: float


def read_text(path):
    """The text of a UTF-8 file; a clear error naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"`text` must be a text file. {path} is {'a folder' if path.is_dir() else 'missing'}. "
                        f"Received: text={str(path)!r}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8"), hashlib.sha256(data).hexdigest()
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text (byte {error.start} is {data[error.start:error.start + 1]!r}); "
                        "convert it first, e.g. iconv -t UTF-8.") from None


def encode(text, vocabulary):
    index = {c: i for i, c in enumerate(vocabulary)}
    return np.fromiter((index[c] for c in text), dtype="int32", count=len(text))


def text_corpus(path, seq_len=100, batch_size=64, held_out=HELD_OUT, seed=0, vocabulary=None):
    """Cut the text file at `path` into training and held-out windows.

    Args:
        path: path of a UTF-8 text file.
        seq_len: int. Characters per window. Defaults to `100`.
        batch_size: int. Windows per batch. Defaults to `64`.
        held_out: float. The share at the end of the text kept for scoring. Defaults to `0.1`.
        seed: int. The sequence of random training windows.
        vocabulary: list of str or None. A run's vocabulary (resuming); every
            character of the text must be in it. Defaults to the text's own characters.

    Returns:
        `TextCorpus`.
    """
    import tensorflow as tf

    text, digest = read_text(path)
    if vocabulary is None:
        vocabulary = sorted(set(text))
        if len(vocabulary) < 2:  # one character follows every other: there is nothing to learn
            raise DataError(f"{path} holds {len(vocabulary)} distinct character{'s' if not vocabulary else ''} "
                            f"({''.join(vocabulary)!r}): a text generator needs at least 2.")
    else:
        unseen = sorted(set(text) - set(vocabulary))
        if unseen:
            raise DataError(f"{path} has characters the run's vocabulary lacks: {''.join(unseen)!r}.")
    seq_len, batch_size = int(seq_len), int(batch_size)
    split = int(len(text) * (1 - held_out))
    need = 2 * (seq_len + 1)
    if split < need or len(text) - split < seq_len + 1:
        raise DataError(f"{path} holds {len(text)} characters: too short for windows of seq_len={seq_len} "
                        f"with {held_out:.0%} held out (at least {int(need / (1 - held_out)) + seq_len * 10} needed).")
    ids = encode(text, vocabulary)
    train_ids, val_ids = ids[:split], ids[split:]

    starts_max = len(train_ids) - seq_len - 1
    source = tf.constant(train_ids)
    offsets = tf.range(seq_len + 1, dtype=tf.int64)

    def windows(random_values):
        starts = tf.math.floormod(random_values, starts_max + 1)
        chunk = tf.gather(source, starts[:, None] + offsets[None, :])
        return chunk[:, :-1], chunk[:, 1:]

    train = (tf.data.Dataset.random(seed=seed).batch(batch_size).map(windows, num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(tf.data.AUTOTUNE))

    count = (len(val_ids) - 1) // seq_len
    x = val_ids[:count * seq_len].reshape(count, seq_len)
    y = val_ids[1:count * seq_len + 1].reshape(count, seq_len)
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    counts = np.bincount(train_ids, minlength=len(vocabulary)) + 1.0  # add-one: a held-out-only character
    unigram_bits = float(-np.mean(np.log2((counts / counts.sum())[val_ids])))
    return TextCorpus(train=train, val=val, vocabulary=list(vocabulary),
                      steps_per_epoch=max(1, len(train_ids) // (seq_len * batch_size)),
                      num_train_chars=len(train_ids), num_val_chars=count * seq_len, sha256=digest,
                      unigram_bits=unigram_bits)
