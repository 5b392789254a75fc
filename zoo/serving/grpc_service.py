"""TF Serving's gRPC contract over a `ModelStore` (`zoo.serving.store`), with
tensorflow-serving-api's protos; `zoo.serving.server.ModelServer` starts it.

`PredictionService` (Predict, Classify, Regress, MultiInference, GetModelMetadata) and
`ModelService` (GetModelStatus, HandleReloadConfigRequest), so the official stubs work
unchanged:

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

import functools
import time

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from zoo.errors import ZooError
from zoo.serving import SIGNATURE_DEFAULT, example_api
from zoo.serving.store import ServingError, log, model_configs


# A status's details travel in HTTP/2 trailers, which gRPC clients refuse past 16 KiB
# ("metadata size exceeds hard limit"): an error quoting a 4 MiB model name a client
# sent would reach that client as RESOURCE_EXHAUSTED instead of its own status.
MAX_DETAILS_CHARS = 4096


def details(message):
    """An error message cut to what a status's details can carry."""
    message = str(message)
    if len(message) <= MAX_DETAILS_CHARS:
        return message
    return f"{message[:MAX_DETAILS_CHARS - 40]}... ({len(message)} characters in all)"


def _abort(context, error):
    context.abort(getattr(grpc.StatusCode, error.code, grpc.StatusCode.INVALID_ARGUMENT), details(error))


def _answered(api):
    """Run a servicer method: a `ServingError` aborts with its status code, a bug with
    INTERNAL (the server goes on), and the metrics count the request either way."""

    def wrap(method):
        @functools.wraps(method)
        def handler(self, request, context):
            started = time.perf_counter()
            code = "OK"
            try:
                return method(self, request, context)
            except ServingError as error:
                code = error.code
                _abort(context, error)
            except Exception as error:
                if isinstance(error, grpc.RpcError) or context.code() is not None:
                    code = "ABORTED"
                    raise
                code = "INTERNAL"
                log.exception("gRPC %s failed", method.__name__)
                context.abort(grpc.StatusCode.INTERNAL, details(f"{type(error).__name__}: {error}"))
            finally:
                if self.metrics is not None and api:
                    spec = request.tasks[0].model_spec if api == "multi_inference" and request.tasks else \
                        getattr(request, "model_spec", None)
                    name = spec.name if spec is not None else ""
                    self.metrics.count_request(name, code, api, "GRPC", time.perf_counter() - started)

        return handler

    return wrap


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
        return store.get(model_spec.name, label=model_spec.version_label)
    version = model_spec.version.value if model_spec.HasField("version") else None
    return store.get(model_spec.name, version)


def _answer_spec(response_spec, servable, signature_name):
    response_spec.name = servable.name
    response_spec.version.value = servable.version
    response_spec.signature_name = signature_name


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, store, max_message_bytes=32 << 20, metrics=None):
        self.store = store
        self.max_message_bytes = int(max_message_bytes)
        self.metrics = metrics

    @_answered("predict")
    def Predict(self, request, context):
        import tensorflow as tf

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
        response = predict_pb2.PredictResponse()
        _answer_spec(response.model_spec, servable, signature_name)
        for key, array in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(array))
        return response

    @_answered("classify")
    def Classify(self, request, context):
        return self._on_examples(request, example_api.classify, classification_pb2.ClassificationResponse())

    @_answered("regress")
    def Regress(self, request, context):
        return self._on_examples(request, example_api.regress, regression_pb2.RegressionResponse())

    def _on_examples(self, request, run, response):
        servable = _servable(self.store, request.model_spec)
        signature_name, result = run(servable, request.model_spec.signature_name, request.input)
        _answer_spec(response.model_spec, servable, signature_name)
        response.result.CopyFrom(result)
        return response

    @_answered("multi_inference")
    def MultiInference(self, request, context):
        """Several classify/regress tasks of one model on one input (TF Serving's
        multi_inference.cc: every task names the same model, each a signature once)."""
        if not request.tasks:
            raise ServingError("Tasks is empty")
        names = {task.model_spec.name for task in request.tasks}
        if len(names) != 1:
            raise ServingError("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        signatures = [task.model_spec.signature_name or SIGNATURE_DEFAULT for task in request.tasks]
        if len(set(signatures)) != len(signatures):
            raise ServingError("Duplicate evaluation of signature: " + next(
                name for name in signatures if signatures.count(name) > 1))
        servable = _servable(self.store, request.tasks[0].model_spec)
        response = inference_pb2.MultiInferenceResponse()
        for task, signature_name in zip(request.tasks, signatures):
            result = response.results.add()
            if task.method_name == example_api.CLASSIFY:
                _, classification = example_api.classify(servable, signature_name, request.input)
                result.classification_result.CopyFrom(classification)
            elif task.method_name == example_api.REGRESS:
                _, regression = example_api.regress(servable, signature_name, request.input)
                result.regression_result.CopyFrom(regression)
            else:
                raise ServingError(f"Unsupported signature method_name: {task.method_name}")
            _answer_spec(result.model_spec, servable, signature_name)
        return response

    @_answered("")
    def GetModelMetadata(self, request, context):
        servable = _servable(self.store, request.model_spec)
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise ServingError(
                f"metadata_field must be ['signature_def'] (the only metadata TF Serving "
                f"has). Received: metadata_field={fields}"
            )
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, definition in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(definition)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest (a new `ModelServerConfig`: models
    added, dropped, policies and labels changed, answered once loaded)."""

    def __init__(self, store):
        self.store = store
        self.metrics = None

    @_answered("")
    def GetModelStatus(self, request, context):
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        if spec.WhichOneof("version_choice") == "version_label":
            version = self.store.get(spec.name, label=spec.version_label).version
        response = get_model_status_pb2.GetModelStatusResponse()
        for entry in self.store.status(spec.name, version):
            status = response.model_version_status.add()
            status.version = int(entry["version"])
            status.state = get_model_status_pb2.ModelVersionStatus.State.Value(entry["state"])
            status.status.error_code = _error_code(entry["status"]["error_code"])
            status.status.error_message = entry["status"]["error_message"]
        return response

    def HandleReloadConfigRequest(self, request, context):
        response = model_management_pb2.ReloadConfigResponse()
        try:
            self.store.reload_config(model_configs(request.config))
        except ZooError as error:
            response.status.error_code = _error_code("INVALID_ARGUMENT")
            response.status.error_message = str(error)
        return response


def _error_code(name):
    from tensorflow_serving.apis import status_pb2

    return status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type.values_by_name[name].number


def start_grpc_server(store, host, port, max_message_bytes, workers=16, metrics=None):
    """Start serving `store` on `host:port` (`0`: a free port); returns `(server, port)`."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zoo-grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(store, max_message_bytes, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(store), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"could not listen for gRPC on {host}:{port}")
    server.start()
    return server, bound
