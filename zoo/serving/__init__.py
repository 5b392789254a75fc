"""Serving: export SavedModels that TF Serving loads as they are, and serve them locally
as TF Serving would.

    >>> import zoo
    >>> path = zoo.export("runs/flowers", "models/", "flowers")   # models/flowers/1/
    $ zoo serve models/            # TF Serving's REST (8501) and gRPC (8500) contract
    $ zoo serve --model_config_file models.config --enable_batching
    $ zoo predict --url http://127.0.0.1:8501 --model flowers rose.jpg

`export` (signatures and the atomic version directory), `store` (the model store:
servables run in a Session, versions, policies, labels), `errors` (what a refused request
meets, with its HTTP status and gRPC code), `json_tensor`
(TF Serving's REST JSON codec), `example_api` (Classify/Regress on tf.Examples),
`batching` (TF Serving's server-side batching), `metrics` (Prometheus), `rest` (the HTTP
handler), `grpc_service` (PredictionService and ModelService with
tensorflow-serving-api's protos), `server` (`ModelServer`: the store over REST and
gRPC), `client` (b64 images to the bytes signature). `store` imports neither front end
(`batching` only when batching is on); `batching` and the codecs import `errors` only; `server`
composes the rest, so there is no import cycle. Nothing here is imported by
`import zoo.serving`, so the CLI can list these commands without TensorFlow.
"""

SIGNATURE_DEFAULT = "serving_default"
SIGNATURE_UINT8 = "serving_uint8"
SIGNATURE_BYTES = "serving_bytes"
SIGNATURE_TOP_K = "top_k"
SIGNATURE_EXPLAIN = "explain"
SIGNATURE_CLASSIFY = "classify"  # TF Serving's classification method: tf.Examples in
CLASSIFY_FEATURE = "image/encoded"  # the tf.Example feature holding the image file's bytes
CLASSIFY_METHOD = "tensorflow/serving/classify"
METADATA_FILE = "assets.extra/zoo.json"
