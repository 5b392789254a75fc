"""A character-level LSTM language model (Karpathy's char-rnn, after Graves 2013,
https://arxiv.org/abs/1308.0850): characters in, the next character's logits out.

Unlike keras-io's character LSTM (a one-hot window of 40 characters predicting the
41st), it predicts the next character at *every* position of a window, from a learned
embedding: each window of 100 characters trains 100 predictions instead of one, which
is where most of its speed per character comes from.

- Input: int32 token ids `(batch, time)`; any length (the same weights run one step at
  a time to generate).
- Embedding (64) → `num_layers` × LSTM(`units`, every step's output) → Dense logits
  over the vocabulary (float32 even under mixed precision, so the softmax is exact).
"""

EMBEDDING = "embedding"
LOGITS = "logits"
LSTM_PREFIX = "lstm_"


def char_lstm(vocabulary_size=65, units=384, num_layers=1, embedding_dim=64, dropout=0.0, name="char_lstm"):
    """Build the language model.

    Args:
        vocabulary_size: int. Distinct characters. Defaults to `65` (Tiny Shakespeare's).
        units: int. LSTM width. Defaults to `384`.
        num_layers: int. Stacked LSTMs. Defaults to `1`.
        embedding_dim: int. Defaults to `64`.
        dropout: float. Dropout after each LSTM while training. Defaults to `0.0`.

    Returns:
        A `keras.Model`: int32 `(None, None)` → float32 logits `(None, None, vocabulary_size)`.
    """
    import keras
    from keras import layers

    if int(vocabulary_size) < 2:
        raise ValueError(f"`vocabulary_size` must be at least 2. Received: vocabulary_size={vocabulary_size}")
    inputs = keras.Input((None,), dtype="int32", name="token_ids")
    x = layers.Embedding(int(vocabulary_size), int(embedding_dim), name=EMBEDDING)(inputs)
    for i in range(int(num_layers)):
        x = layers.LSTM(int(units), return_sequences=True, name=f"{LSTM_PREFIX}{i + 1}")(x)
        if dropout:
            x = layers.Dropout(float(dropout), name=f"dropout_{i + 1}")(x)
    logits = layers.Dense(int(vocabulary_size), dtype="float32", name=LOGITS)(x)
    return keras.Model(inputs, logits, name=name)


def recurrent_layers(model):
    return [layer for layer in model.layers if layer.name.startswith(LSTM_PREFIX)]


def initial_states(model, batch_size):
    """Zero `(h, c)` for each LSTM, flat: `[h1, c1, h2, c2, ...]`."""
    from keras import ops

    states = []
    for layer in recurrent_layers(model):
        states += [ops.zeros((batch_size, layer.units)), ops.zeros((batch_size, layer.units))]
    return states


def step(model, token_ids, states):
    """One character: `token_ids` `(batch,)` and flat states → logits `(batch, V)` and
    the new flat states. The same weights as `model`; plain Keras ops on any backend."""
    x = model.get_layer(EMBEDDING)(token_ids)
    new_states = []
    for i, layer in enumerate(recurrent_layers(model)):
        x, (h, c) = layer.cell(x, [states[2 * i], states[2 * i + 1]], training=False)
        new_states += [h, c]
    return model.get_layer(LOGITS)(x), new_states
