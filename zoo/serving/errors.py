"""The errors a served request can meet, each with the HTTP status and the canonical
(gRPC) code TF Serving answers it with. Every serving module raises these; `rest` and
`grpc_service` turn them into answers. (Their own module, so that `store`, `batching`
and the codecs share them without importing one another.)"""


class ServingError(Exception):
    """A request the server refuses; `status` is its HTTP status (4xx)."""

    status = 400
    code = "INVALID_ARGUMENT"  # the canonical (gRPC) error code TF Serving reports


class NotFound(ServingError):
    status = 404
    code = "NOT_FOUND"


class BodyTooLarge(ServingError):
    status = 413
    code = "RESOURCE_EXHAUSTED"


class Unavailable(ServingError):
    status = 503
    code = "UNAVAILABLE"


class FailedPrecondition(ServingError):
    status = 400
    code = "FAILED_PRECONDITION"


class DeadlineExceeded(ServingError):
    """The request ran past the server's deadline (TF Serving's `--rest_api_timeout_in_ms`):
    HTTP 504, as TF Serving maps DEADLINE_EXCEEDED."""

    status = 504
    code = "DEADLINE_EXCEEDED"
