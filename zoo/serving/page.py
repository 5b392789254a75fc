"""The web page `zoo serve --ui` (and `zoo ui`) serves at `/` on the REST port: drop an
image on a served classifier and see its top-k labels and where it looked; write with a
char-LSTM; see an autoencoder's reconstruction; draw a GAN's samples.

The page is plain HTML, CSS and JavaScript shipped in the package (`zoo/serving/ui/`):
no CDN, no build step, it works offline. It calls the same public REST API a user's own
client calls (TF Serving's status, metadata and `:predict`), plus one read-only answer
TF Serving's API has no call for: `/ui/models.json`, the names of the models served,
their version labels and the body limit. No route takes a file path: the page's files
are read once, when the server starts, into a table keyed by the exact URL paths below.

Every page answer carries a Content-Security-Policy that allows only the page's own
files (no inline script, no other origin), and the page writes labels and generated
text as text, never as HTML.
"""

from __future__ import annotations

import json
from pathlib import Path

UI_DIR = Path(__file__).with_name("ui")
MODELS_PATH = "/ui/models.json"

# URL path -> (file in UI_DIR, content type). Nothing else under `/` or `/ui/` is served.
FILES = {
    "/": ("index.html", b"text/html; charset=utf-8"),
    "/ui/app.js": ("app.js", b"text/javascript; charset=utf-8"),
    "/ui/style.css": ("style.css", b"text/css; charset=utf-8"),
    "/ui/icon.svg": ("icon.svg", b"image/svg+xml"),
}

# Only the page's own files: no inline script or style, no other origin; images from
# the page's own canvases (blob: and data: URLs it makes), requests to this server only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-cache"),
]


class Page:
    """The page's files, read once, and the models list, answered from `store`.

    Args:
        store: the server's `ModelStore` (its names and version labels).
        max_body_bytes: the REST body limit, told to the page so that it refuses a file
            too large to send before sending it.
    """

    def __init__(self, store, max_body_bytes):
        self.store = store
        self.max_body_bytes = int(max_body_bytes)
        self.files = {path: ((UI_DIR / name).read_bytes(), kind) for path, (name, kind) in FILES.items()}

    def serves(self, method, path):
        """Whether `method path` is the page's to answer (GET only; the rest is the API's)."""
        return method == "GET" and (path in self.files or path == MODELS_PATH)

    def answer(self, path):
        """`(status, body, content type)` of a GET of `path` (one `serves` accepted)."""
        if path == MODELS_PATH:
            models = [{"name": name, "labels": self.store.labels(name)} for name in self.store.names()]
            body = json.dumps({"models": models, "max_body_bytes": self.max_body_bytes}).encode()
            return 200, body, b"application/json"
        body, kind = self.files[path]
        return 200, body, kind
