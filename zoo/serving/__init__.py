"""Serving: export SavedModels that TF Serving loads as they are, and serve them locally
as TF Serving would.

    >>> import zoo
    >>> path = zoo.export("runs/flowers", "models/", "flowers")   # models/flowers/1/
    $ zoo serve models/            # TF Serving's REST (8501) and gRPC (8500) contract
    $ zoo serve --model_config_file models.config --enable_batching
    $ zoo predict --url http://127.0.0.1:8501 --model flowers rose.jpg

`export` (any task's signatures, which the task module makes, into the atomic version
directory), `store` (the model store:
servables run in a Session, versions, policies, labels), `errors` (what a refused request
meets, with its HTTP status and gRPC code), `json_tensor`
(TF Serving's REST JSON codec), `example_api` (Classify/Regress on tf.Examples),
`batching` (TF Serving's server-side batching), `metrics` (Prometheus), `rest` (the REST
API: an ASGI app on uvicorn + httptools, with its limits), `grpc_service` (PredictionService and ModelService with
tensorflow-serving-api's protos), `server` (`ModelServer`: the store over REST and
gRPC), `client` (b64 images to the bytes signature). `store` imports neither front end
(`batching` only when batching is on); `batching` and the codecs import `errors` only; `server`
composes the rest, so there is no import cycle. Serving knows TF Serving, not images
or models: it imports neither `zoo.data` nor `zoo.interpret` (a task's signatures do).
Nothing here is imported by `import zoo.serving`, so the CLI can list these commands
without TensorFlow.
"""

SIGNATURE_DEFAULT = "serving_default"
METADATA_FILE = "assets.extra/zoo.json"
