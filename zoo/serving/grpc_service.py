"""TF Serving's gRPC contract over a `ModelStore` (`zoo.serving.store`), with
tensorflow-serving-api's protos; `zoo.serving.server.ModelServer` starts it.

`PredictionService.Predict` and `GetModelMetadata`, and `ModelService.GetModelStatus`,
so the official stubs work unchanged:

    >>> import grpc
    >>> from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    >>> stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel("127.0.0.1:8500"))
    >>> request = predict_pb2.PredictRequest()
    >>> request.model_spec.name = "digits"
    >>> request.inputs["images"].CopyFrom(tf.make_tensor_proto(batch))
    >>> stub.Predict(request).outputs["probabilities"]

(Named `grpc_service`, not `grpc`, so that `import grpc` inside this package means grpcio.)
"""

from __future__ import annotations

from concurrent import futures

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from zoo.serving import SIGNATURE_DEFAULT
from zoo.serving.store import NotFound, ServingError, log

_CODES = {404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED}


def _abort(context, error):
    context.abort(_CODES.get(error.status, grpc.StatusCode.INVALID_ARGUMENT), str(error))


# The TensorProto field that holds the values of each dtype (when tensor_content does not).
_VALUE_FIELDS = {
    "DT_FLOAT": "float_val", "DT_DOUBLE": "double_val", "DT_INT32": "int_val", "DT_UINT8": "int_val",
    "DT_INT16": "int_val", "DT_INT8": "int_val", "DT_UINT16": "int_val", "DT_INT64": "int64_val",
    "DT_UINT32": "uint32_val", "DT_UINT64": "uint64_val", "DT_STRING": "string_val", "DT_BOOL": "bool_val",
    "DT_HALF": "half_val", "DT_BFLOAT16": "half_val",
}


def check_claimed_size(key, proto, max_bytes):
    """Refuse a tensor whose claimed shape is larger than the message could carry.

    `tf.make_ndarray` allocates the claimed shape first and fills it from the values
    (repeating the last one), so 44 bytes claiming `[1, 500000000]` would cost 1.9 GB
    before anything else looked at them.
    """
    import numpy as np
    from tensorflow.core.framework import types_pb2

    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise ServingError(f"Input {key!r} claims a negative dimension: shape={dims}")
    count = int(np.prod(dims, dtype=object)) if dims else 1
    dtype = types_pb2.DataType.Name(proto.dtype)
    itemsize = 1 if dtype == "DT_STRING" else max(np.dtype(_numpy_dtype(proto.dtype)).itemsize, 1)
    if count * itemsize > max_bytes:
        raise ServingError(f"Input {key!r} claims shape {dims} ({count:,} values), more than this server's "
                           f"message limit of {max_bytes:,} bytes can hold.")
    if proto.tensor_content:
        held = len(proto.tensor_content) // itemsize
    else:
        field = _VALUE_FIELDS.get(dtype)
        held = len(getattr(proto, field)) if field else count
    if held not in (count, 1) and not (count == 0 and held == 0):
        raise ServingError(f"Input {key!r} holds {held:,} values for its claimed shape {dims} ({count:,} values).")


def _numpy_dtype(enum):
    import tensorflow as tf

    return tf.as_dtype(enum).as_numpy_dtype


def _servable(store, model_spec):
    if model_spec.WhichOneof("version_choice") == "version_label":
        raise NotFound(f"Version labels are not configured on this server. Received: {model_spec.version_label!r}")
    version = model_spec.version.value if model_spec.HasField("version") else None
    return store.get(model_spec.name, version)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata; Classify, Regress, MultiInference stay UNIMPLEMENTED
    (zoo exports predict signatures only)."""

    def __init__(self, store, max_message_bytes=32 << 20):
        self.store = store
        self.max_message_bytes = int(max_message_bytes)

    def Predict(self, request, context):
        import tensorflow as tf

        try:
            servable = _servable(self.store, request.model_spec)
            signature_name = request.model_spec.signature_name or SIGNATURE_DEFAULT
            inputs = {}
            for key, proto in request.inputs.items():
                check_claimed_size(key, proto, self.max_message_bytes)
                try:
                    inputs[key] = tf.make_ndarray(proto)
                except (TypeError, ValueError) as error:
                    raise ServingError(f"Input {key!r} is not a valid TensorProto: {error}") from None
            outputs = servable.predict(signature_name, inputs, output_filter=list(request.output_filter))
        except ServingError as error:
            _abort(context, error)
        except Exception as error:  # a bug answers INTERNAL and the server goes on
            log.exception("gRPC Predict failed")
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for key, array in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(array))
        return response

    def GetModelMetadata(self, request, context):
        try:
            servable = _servable(self.store, request.model_spec)
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise ServingError(
                    f"metadata_field must be ['signature_def'] (the only metadata TF Serving "
                    f"has). Received: metadata_field={fields}"
                )
        except ServingError as error:
            _abort(context, error)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, definition in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(definition)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, store):
        self.store = store

    def GetModelStatus(self, request, context):
        try:
            servable = _servable(self.store, request.model_spec)
        except ServingError as error:
            _abort(context, error)
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = servable.version
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response


def start_grpc_server(store, host, port, max_message_bytes, workers=16):
    """Start serving `store` on `host:port` (`0`: a free port); returns `(server, port)`."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zoo-grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(store, max_message_bytes), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(store), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"could not listen for gRPC on {host}:{port}")
    server.start()
    return server, bound
