"""TF Serving's Classify, Regress and MultiInference APIs: `tf.Example`s in, a signature
of the classification or regression method run on them, `ClassificationResult` /
`RegressionResult` out. Both front ends use it: REST (`:classify`, `:regress`, JSON
examples) and gRPC (`Classify`, `Regress`, `MultiInference` with `Input` protos).

A classify signature (method `tensorflow/serving/classify`) takes one string tensor,
`inputs`, of serialized `tf.Example`s and gives `classes` (DT_STRING [N, K]) and/or
`scores` (DT_FLOAT [N, K]); a regress signature (`tensorflow/serving/regress`) gives
`outputs` (DT_FLOAT [N] or [N, 1]). Parsing the examples is the model's work, inside its
graph, as in TF Serving; the checks and their wording follow TF Serving's
`classifier.cc` and `regressor.cc`.

REST's JSON examples are read into the same `Input` proto by
`zoo.serving.json_tensor.examples_input`, and results written by its
`classification_json` / `regression_json`.
"""

from __future__ import annotations

import numpy as np

from zoo.serving import SIGNATURE_DEFAULT
from zoo.serving.errors import ServingError

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def serialized_examples(input_proto):
    """An `Input` proto → `[bytes]`: one serialized `tf.Example` per example, with the
    context's features merged in (concatenated serializations merge, as TF Serving's
    input_util does)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples = input_proto.example_list.examples
        serialized = [example.SerializeToString() for example in examples]
    elif kind == "example_list_with_context":
        with_context = input_proto.example_list_with_context
        context = with_context.context.SerializeToString()
        serialized = [context + example.SerializeToString() for example in with_context.examples]
    else:
        raise ServingError("Input is empty.")
    if not serialized:
        raise ServingError("Input is empty.")
    return serialized


# ------------------------------------------------------------------------- running
def _signature_for(servable, signature_name, method):
    """The named signature, checked to be of `method` with one `inputs` tensor."""
    kind = "classification" if method == CLASSIFY else "regression"
    name = signature_name or SIGNATURE_DEFAULT
    if name not in servable.signatures:
        raise ServingError(f"No signature was found with the name: {name}")
    signature = servable.signatures[name]
    # TF Serving checks the method name only with --enable_signature_method_name_check
    # (off by default): a signature with one `inputs` tensor and the right outputs runs.
    if len(signature.inputs) != 1:
        raise ServingError("Expected one input Tensor.")
    if "inputs" not in signature.inputs:
        raise ServingError(f"No {kind} inputs found in SignatureDef: {sorted(signature.inputs)}")
    return signature


def classify(servable, signature_name, input_proto):
    """Run a classify signature → `(signature name, ClassificationResult)`."""
    from tensorflow_serving.apis import classification_pb2

    signature = _signature_for(servable, signature_name, CLASSIFY)
    wanted = [key for key in ("classes", "scores") if key in signature.outputs]
    if not 1 <= len(signature.outputs) <= 2:
        raise ServingError(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if not wanted:
        raise ServingError('Expected classification signature outputs to contain at least one of "classes" '
                           'or "scores".')
    serialized = serialized_examples(input_proto)
    count = len(serialized)
    outputs = servable.predict(signature.name, {"inputs": np.array(serialized, dtype=object)}, output_filter=wanted)
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for key, array, dtype in (("classes", classes, "DT_STRING"), ("scores", scores, "DT_FLOAT")):
        if array is None:
            continue
        if array.ndim != 2:
            raise ServingError(f"Expected Tensor shape: [batch_size num_classes] but got {list(array.shape)}")
        if (dtype == "DT_STRING") != (array.dtype == object) or (dtype == "DT_FLOAT" and array.dtype != np.float32):
            raise ServingError(f"Expected {key} Tensor of {dtype}. Got: {signature.outputs[key].dtype_name}")
        if array.shape[0] != count:
            raise ServingError(f"Expected {key} output batch size of {count}. Got: {array.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise ServingError(f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} "
                           f"vs. {scores.shape[1]}")
    result = classification_pb2.ClassificationResult()
    width = (classes if classes is not None else scores).shape[1]
    for row in range(count):
        classifications = result.classifications.add()
        for column in range(width):
            entry = classifications.classes.add()
            if classes is not None:
                entry.label = _text(classes[row, column])
            if scores is not None:
                entry.score = float(scores[row, column])
    return signature.name, result


def regress(servable, signature_name, input_proto):
    """Run a regress signature → `(signature name, RegressionResult)`."""
    from tensorflow_serving.apis import regression_pb2

    signature = _signature_for(servable, signature_name, REGRESS)
    if len(signature.outputs) != 1:
        raise ServingError("Expected one output Tensor.")
    if "outputs" not in signature.outputs:
        raise ServingError(f"No regression outputs found in SignatureDef: {sorted(signature.outputs)}")
    serialized = serialized_examples(input_proto)
    count = len(serialized)
    values = servable.predict(signature.name, {"inputs": np.array(serialized, dtype=object)})["outputs"]
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise ServingError(f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                           f"{list(values.shape)}")
    if values.shape[0] != count:
        raise ServingError(f"Input batch size did not match output batch size: {count} vs. {values.shape[0]}")
    if values.dtype != np.float32:
        raise ServingError(f"Expected output Tensor of DT_FLOAT.  Got: {signature.outputs['outputs'].dtype_name}")
    result = regression_pb2.RegressionResult()
    for value in values.reshape(-1):
        result.regressions.add().value = float(value)
    return signature.name, result


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
