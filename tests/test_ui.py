"""The web page (`zoo serve --ui`, `zoo ui`) in a real headless Chromium, driven by
Selenium: what a user sees when they drop their photos on a served fine-tuned run,
write with a char-LSTM, look at an autoencoder's reconstructions and a GAN's samples,
and what a hostile label or file does to it.

Every answer the page shows is checked against a reference computed here: `zoo predict`
and `zoo.explain` for the classifier (labels, probabilities, the Grad-CAM peak, the
overlay against `zoo.plots.heat_overlay` of the served map), `zoo generate` for the
text, the REST API itself for the reconstructions.

Browser: Debian's `chromium` and `chromium-driver` (`.ci/run` installs them with
apt-get). Without them these tests are skipped, except under CI, where they fail.
Screenshots of every view go to `$ZOO_UI_SCREENSHOTS` (default: a temporary folder);
the README shows two of them (docs/ui/).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import forked_zoo

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from PIL import Image  # noqa: E402

import zoo  # noqa: E402
from tests.helpers import localisation  # noqa: E402
from zoo.serving.page import CONTENT_SECURITY_POLICY  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
XSS_IMG = '<img src=x onerror="document.body.dataset.xss=\'img\'">'
XSS_SCRIPT = "<script>document.body.dataset.xss='script'</script>"
CANARY_CLASSES = [XSS_IMG, XSS_SCRIPT, "café ☕ & <b>bold</b>", "rocket"]


# ------------------------------------------------------------------------ fixtures
# With $ZOO_UI_SCREENSHOTS set (the README's pictures: docs/ui/), the runs train as
# long as the large tier's own (test_explain.py's classifier, the shared char-LSTM, ...)
# so that the pictures show trained models; otherwise just enough for the wiring.
PICTURES = bool(os.environ.get("ZOO_UI_SCREENSHOTS"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run of each kind the page shows, small enough for the default tier: a
    classifier fine-tuned (`zoo.finetune`) on real photos (objects from scikit-image
    photos pasted on others: tests/helpers/localisation.py), a char-LSTM on the
    standard library's text, an autoencoder and a GAN on scikit-learn's digits."""
    import pydoc_data.topics

    root = tmp_path_factory.mktemp("ui_runs")
    localisation.register_tiny_cnn()
    images, labels, boxes = localisation.make_set(n_per_class=100 if PICTURES else 24, seed=0)
    photos = localisation.write_folder(root / "photos", images, labels, boxes)
    found = {"objects": zoo.finetune(photos, model="tiny_cnn", weights="none", epochs=14 if PICTURES else 3,
                                     lr=3e-3, out=root / "objects", verbose=0, no_tensorboard=True)}
    text = "".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))
    (root / "topics.txt").write_text(text if PICTURES else text[:40000], encoding="utf-8")
    found["text"] = zoo.train("text-generation", root / "topics.txt", out=root / "text", epochs=3 if PICTURES else 1,
                              units=128 if PICTURES else 64, seq_len=64, batch_size=32, lr=8e-3, verbose=0,
                              no_tensorboard=True)
    found["autoencoder"] = zoo.train("autoencoder", "digits", out=root / "autoencoder", epochs=6 if PICTURES else 1,
                                     lr=3e-3, verbose=0, no_tensorboard=True)
    found["gan"] = zoo.train("gan", "digits", out=root / "gan", epochs=25 if PICTURES else 1,
                             width=32 if PICTURES else 16, verbose=0, no_tensorboard=True)
    return found


@pytest.fixture(scope="module")
def models(runs, tmp_path_factory):
    """The runs exported, and a TF Serving model config: `objects` version 1 is the
    fine-tuned run (label `stable`), version 2 the same model whose class names are
    hostile HTML (label `canary`)."""
    base = tmp_path_factory.mktemp("ui_models")
    zoo.export(runs["objects"], base, "objects", version=1)
    zoo.export(runs["objects"].model, base, "objects", version=2, classes=CANARY_CLASSES)
    for kind in ("text", "autoencoder", "gan"):
        zoo.export(runs[kind], base, kind)
    entries = []
    for name in ("objects", "text", "autoencoder", "gan"):
        labels = ' version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }'
        entries.append(f'config {{ name: "{name}" base_path: "{base / name}" model_platform: "tensorflow" '
                       f'model_version_policy {{ all {{}} }}{labels if name == "objects" else ""} }}')
    config = base / "models.config"
    config.write_text("model_config_list {\n  " + "\n  ".join(entries) + "\n}\n")
    return config


@pytest.fixture(scope="module")
def server(models):
    from zoo.serving.server import ModelServer

    with ModelServer(model_config_file=models, port=0, grpc_port=None, poll_seconds=0, ui=True) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    if webdriver is None or not (CHROMIUM and CHROMEDRIVER):
        missing = "selenium" if webdriver is None else "chromium and chromium-driver (apt-get)"
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests need {missing}; .ci/run installs them")
        pytest.skip(f"no browser: {missing}")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--force-device-scale-factor=1", "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = Path(os.environ.get("ZOO_UI_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Held-out photos (another seed than the run's) as PNG files: one 224-px, one at
    the set's 64 px, and the 224-px one again for the timing after a warm-up."""
    images, labels, boxes = localisation.make_set(n_per_class=1, seed=7)
    folder = tmp_path_factory.mktemp("ui_photos")
    paths = []
    for index, (image, size) in enumerate(zip(images, (224, 64, 224, 160))):
        path = folder / f"photo{index + 1}.png"
        Image.fromarray(image).resize((size, size), Image.BICUBIC).save(path)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------ helpers
def wait(driver, script, timeout=60):
    """Wait until `script` returns something true; on a timeout, say what the page's
    error line and console said."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(script))
    except TimeoutException:
        error = driver.execute_script("return document.getElementById('error').textContent")
        raise AssertionError(f"the page did not get there in {timeout} s: {script}\nits error line: {error}\n"
                             f"its console: {driver.get_log('browser')}") from None


def open_page(driver, server, model, target=""):
    """Load the page, pick `model` (and `target`: "" latest, "/versions/N" or
    "/labels/L"), wait until its view shows. Returns the page's load time in ms."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(server.page_url)
    wait(driver, "return document.body.dataset.ready === 'true'")
    loaded = driver.execute_script("return performance.getEntriesByType('navigation')[0].loadEventEnd")
    if driver.execute_script("return document.getElementById('model').value") != model:
        driver.execute_script("document.body.dataset.ready = ''")
        Select(driver.find_element(By.ID, "model")).select_by_value(model)
        wait(driver, "return document.body.dataset.ready === 'true'")
    if target:
        driver.execute_script("document.body.dataset.ready = ''")
        Select(driver.find_element(By.ID, "version")).select_by_value(target)
        wait(driver, "return document.body.dataset.ready === 'true'")
    return loaded


def drop(driver, paths):
    """Drop files on the drop zone as a user's drag from the desktop does: a `drop`
    event whose DataTransfer holds the files (Selenium reads them into a file input
    first; the page's own handler takes them from the event). Returns the number of
    cards there will be once every file has its own."""
    from selenium.webdriver.common.by import By

    before = driver.execute_script("return document.querySelectorAll('.card').length")
    driver.execute_script("""
        const input = document.createElement('input');
        input.type = 'file'; input.multiple = true; input.id = 'test-drop-source'; input.hidden = true;
        document.body.append(input);""")
    driver.find_element(By.ID, "test-drop-source").send_keys("\n".join(str(p) for p in paths))
    driver.execute_script("""
        const input = document.getElementById('test-drop-source');
        const transfer = new DataTransfer();
        for (const file of input.files) transfer.items.add(file);
        input.remove();
        document.getElementById('drop').dispatchEvent(
            new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));""")
    return before + len(paths)


def cards_when_done(driver, total, count, container="classified"):
    """The newest `count` cards, once there are `total` (`drop`'s answer) and none is
    working: [{name, state, labels: [(label, probability text)], dataset, timing,
    error}], oldest first."""
    wait(driver, f"""const cards = document.querySelectorAll('#{container} .card');
        return cards.length >= {total} && [...cards].every((c) => c.dataset.state !== 'working');""")
    found = driver.execute_script(f"""
        return [...document.querySelectorAll('#{container} .card')].slice(0, {count}).reverse().map((c) => ({{
            name: c.querySelector('h2').textContent, state: c.dataset.state, dataset: Object.assign({{}}, c.dataset),
            labels: [...c.querySelectorAll('ol.labels li')].map((li) => [
                li.querySelector('.label').textContent, li.querySelector('.probability').textContent]),
            timing: (c.querySelector('.timing') || {{}}).textContent || '',
            error: (c.querySelector('.error') || {{}}).textContent || '',
            html: c.querySelector('ol.labels') ? c.querySelector('ol.labels').innerHTML : ''}}));""")
    return found


def canvas_pixels(driver, selector):
    """The pixels of the canvas `selector` (the overlay itself, as its PNG), uint8 RGB."""
    url = driver.execute_script(f"return document.querySelector({json.dumps(selector)}).toDataURL('image/png')")
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def zoo_cli(*args):
    result = forked_zoo.run([str(a) for a in args], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def get(server, path, method="GET"):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request(method, path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def no_script_ran(driver):
    assert driver.execute_script("return document.body.dataset.xss") is None


# ---------------------------------------------------------------------- the server
def test_the_page_is_the_packaged_files_with_a_strict_policy_and_nothing_else(server, runs, tmp_path):
    status, headers, body = get(server, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert b"<script src=\"/ui/app.js\"" in body and b"http" not in body  # no CDN: every file is the server's
    ui = Path(zoo.__file__).parent / "serving" / "ui"
    for path, name, kind in (("/ui/app.js", "app.js", "text/javascript"), ("/ui/style.css", "style.css", "text/css")):
        status, headers, body = get(server, path)
        assert status == 200 and headers["content-type"].startswith(kind) and body == (ui / name).read_bytes()
    # No route takes a path: traversal, other files of the package, the folder itself.
    for path in ("/ui/", "/ui/index.html", "/ui/../page.py", "/ui/%2e%2e/page.py", "/ui//app.js",
                 "/ui/app.js/", "/etc/passwd", "/UI/APP.JS", "/index.html"):
        status, _, body = get(server, path)
        assert status == 404 and "error" in json.loads(body), path
    assert get(server, "/", method="POST")[0] == 404
    status, _, body = get(server, "/ui/models.json")
    listed = json.loads(body)
    assert status == 200 and [m["name"] for m in listed["models"]] == ["autoencoder", "gan", "objects", "text"]
    assert listed["models"][2]["labels"] == {"canary": 2, "stable": 1}
    assert listed["max_body_bytes"] == server.max_body_bytes
    # The API is the API: a served model's status answers as without the page.
    status, _, body = get(server, "/v1/models/objects")
    assert status == 200 and len(json.loads(body)["model_version_status"]) == 2

    # Without --ui there is no page: TF Serving's 404 for a path outside /v1/.
    from zoo.serving.server import ModelServer

    zoo.export(runs["gan"], tmp_path, "gan")
    with ModelServer(tmp_path, port=0, grpc_port=None, poll_seconds=0) as plain:
        assert plain.page_url is None
        for path in ("/", "/ui/app.js", "/ui/models.json"):
            assert get(plain, path)[0] == 404


# ------------------------------------------------------------------ the classifier
def test_two_dropped_photos_show_what_zoo_predict_and_zoo_explain_say(server, browser, runs, photos, screenshots,
                                                                      capsys):
    loaded_ms = open_page(browser, server, "objects", "/labels/stable")
    shown = cards_when_done(browser, drop(browser, photos[:2]), 2)
    assert [c["name"] for c in shown] == ["photo1.png", "photo2.png"]
    assert all(c["state"] == "done" for c in shown), shown

    # Labels and probabilities as `zoo predict` prints them (4 decimals).
    printed = zoo_cli("predict", runs["objects"].path, *photos[:2], "--top", "4")
    expected, image = {}, None
    for line in printed.splitlines():
        if not line.startswith(" "):
            image = Path(line).name
            expected[image] = []
        else:
            probability, label = line.split()[:2]
            expected[image].append((label, float(probability)))
    for card in shown:
        top = expected[card["name"]]
        assert [label for label, _ in card["labels"]] == [label for label, _ in top]
        for (_, page), (_, cli) in zip(card["labels"], top):
            assert abs(float(page) - cli) <= 1e-4 + 1e-7, (page, cli)  # the same to the displayed precision
        assert card["dataset"]["top1"] == top[0][0]

    # The overlay's peak is where zoo.explain puts it, and the overlay is the served
    # map blended as zoo's own overlays blend it.
    from zoo.interpret import attribution
    from zoo.plots import heat_overlay

    explained = zoo.explain(runs["objects"], [str(p) for p in photos[:2]], method="gradcam")
    for index, (card, result) in enumerate(zip(shown, explained.results)):
        assert (int(card["dataset"]["peakX"]), int(card["dataset"]["peakY"])) == (
            result["peak"]["x"], result["peak"]["y"]), (card["dataset"], result["peak"])
    model = runs["objects"].model
    originals = [np.asarray(Image.open(p).convert("RGB")) for p in photos[:2]]
    size = tuple(model.inputs[0].shape[1:3])
    resized = np.stack([np.asarray(Image.fromarray(o).resize(size[::-1], Image.BILINEAR)) for o in originals])
    raw = attribution.normalise(attribution.attribute(model, resized.astype("float32"),
                                                      [r["class_id"] for r in explained.results], "gradcam"))
    for index, original in enumerate(originals):
        page = canvas_pixels(browser, f"#classified .card:nth-last-child({index + 1}) canvas")
        reference = heat_overlay(original, raw[index], alpha=0.45)
        difference = np.abs(page.astype(int) - reference.astype(int))
        assert page.shape == original.shape and difference.mean() < 1.5 and np.percentile(difference, 99) <= 8, (
            difference.mean(), np.percentile(difference, 99))
    browser.save_screenshot(str(screenshots / "classifier.png"))

    # The opacity slider redraws the overlays; at 0 the photo shows through untouched.
    browser.execute_script("const s = document.getElementById('opacity'); s.value = '0';"
                           "s.dispatchEvent(new Event('input'));")
    assert np.array_equal(canvas_pixels(browser, "#classified .card:nth-last-child(1) canvas"), originals[0])
    download = browser.execute_script("const a = document.querySelector('#classified .card:last-child a[download]');"
                                      "return [a.getAttribute('download'), a.href]")
    assert download[0] == "photo1.gradcam.png" and download[1].startswith("blob:")

    # Timings, for the log: the page's load and a classify-with-overlay of one 224-px
    # photo once the model is warm (the issue asks < 1 s and < 0.5 s; not asserted).
    warm = cards_when_done(browser, drop(browser, photos[2:3]), 1)[0]
    with capsys.disabled():
        print(f"\n[ui timing] page loaded in {loaded_ms:.0f} ms; 224-px photo, warm: {warm['timing']}")
    assert warm["state"] == "done"


def test_a_version_label_switches_the_model_and_hostile_labels_stay_text(server, browser, photos):
    open_page(browser, server, "objects", "/labels/canary")
    assert browser.execute_script("return document.getElementById('endpoint').textContent").endswith(
        "/v1/models/objects/labels/canary")
    card = cards_when_done(browser, drop(browser, photos[:1]), 1)[0]
    assert card["state"] == "done"
    assert sorted(label for label, _ in card["labels"]) == sorted(CANARY_CLASSES)  # version 2's names
    assert "<img" not in card["html"] and "<script" not in card["html"] and "&lt;img" in card["html"]
    assert not browser.find_elements("css selector", "#classified img, #classified script, #classified b")
    no_script_ran(browser)
    # Back to the stable version: the run's own classes again.
    open_page(browser, server, "objects", "/labels/stable")
    shown = cards_when_done(browser, drop(browser, photos[:1]), 1)[0]
    assert {label for label, _ in shown["labels"]} == set(localisation.OBJECTS)


def test_a_file_that_is_not_an_image_is_an_error_on_the_page_which_keeps_working(server, browser, photos, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture\n")
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as handle:  # larger than the server takes: refused before sending
        handle.truncate(server.max_body_bytes)
    open_page(browser, server, "objects")
    failed = cards_when_done(browser, drop(browser, [notes]), 1)[0]
    assert failed["state"] == "failed" and failed["error"], failed
    error = browser.execute_script("const e = document.getElementById('error'); return e.hidden ? '' : e.textContent")
    assert error.startswith("notes.txt: ") and "\n" not in error.strip()
    refused = cards_when_done(browser, drop(browser, [huge]), 1)[0]
    assert refused["state"] == "failed" and "more than this server takes" in refused["error"]
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    nothing = cards_when_done(browser, drop(browser, [empty]), 1)[0]
    assert nothing["state"] == "failed" and nothing["error"], nothing
    assert cards_when_done(browser, drop(browser, photos[1:2]), 1)[0]["state"] == "done"  # the page goes on


# --------------------------------------------------------------- the other kinds
def test_text_from_the_page_is_zoo_generates_text(server, browser, runs, screenshots):
    open_page(browser, server, "text")
    fields = {"prompt": "def ", "temperature": "0.8", "length": "120", "seed": "11"}
    for field, value in fields.items():
        browser.execute_script("document.getElementById(arguments[0]).value = arguments[1]", field, value)
    browser.find_element("id", "generate").click()
    wait(browser, "return document.body.dataset.generated === 'true'")
    shown = browser.execute_script("return document.getElementById('generated').textContent")
    printed = zoo_cli("generate", runs["text"].path, "--prompt", "def ", "--temperature", "0.8", "--length", "120",
                      "--seed", "11")
    assert shown == printed[:-1] and len(shown) == 124
    browser.save_screenshot(str(screenshots / "text.png"))
    # A request the server refuses is a line on the page; the next one goes through.
    browser.execute_script("document.getElementById('length').value = '20000'")
    browser.find_element("id", "generate").click()
    wait(browser, "return !document.getElementById('error').hidden")
    assert "length" in browser.execute_script("return document.getElementById('error').textContent")
    browser.execute_script("document.getElementById('length').value = '5'; document.body.dataset.generated = ''")
    browser.find_element("id", "generate").click()
    wait(browser, "return document.body.dataset.generated === 'true'")
    assert browser.execute_script("return document.getElementById('error').hidden")


def test_the_autoencoder_view_draws_what_the_server_answers(server, browser, tmp_path, digits, screenshots):
    x_train, _, _, _ = digits
    paths = []
    for index in range(3):
        paths.append(tmp_path / f"digit{index}.png")
        digit = np.asarray(x_train[index]).astype("uint8")
        Image.fromarray(digit[..., 0] if digit.shape[-1] == 1 else digit).save(paths[-1])
    open_page(browser, server, "autoencoder")
    shown = cards_when_done(browser, drop(browser, paths), 3, container="reconstructed")
    assert all(c["state"] == "done" for c in shown), shown
    sent = canvas_pixels(browser, "#reconstructed .card:first-child figure:first-child canvas")[..., :1]
    drawn = canvas_pixels(browser, "#reconstructed .card:first-child figure:last-child canvas")[..., 0]
    body = json.dumps({"instances": [sent.astype(int).tolist()]})
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request("POST", "/v1/models/autoencoder:predict", body=body)
    answer = json.loads(connection.getresponse().read())
    connection.close()
    assert np.array_equal(drawn, np.asarray(answer["predictions"][0])[..., 0])
    browser.save_screenshot(str(screenshots / "autoencoder.png"))


def test_the_gan_view_draws_the_same_samples_for_the_same_seed(server, browser, screenshots):
    open_page(browser, server, "gan")

    def grid(seed):
        browser.execute_script("document.getElementById('gan-seed').value = arguments[0];"
                               "document.body.dataset.sampled = ''", str(seed))
        browser.find_element("id", "sample").click()
        wait(browser, "return document.body.dataset.sampled === 'true'")
        return canvas_pixels(browser, "#gan-grid")

    first = grid(3)
    assert first.shape == (4 * 28 + 6, 4 * 28 + 6, 3) and first.std() > 10
    assert np.array_equal(grid(3), first) and not np.array_equal(grid(4), first)
    browser.save_screenshot(str(screenshots / "gan.png"))
    no_script_ran(browser)


# ---------------------------------------------------------------------- zoo ui
def test_zoo_ui_exports_serves_the_page_and_cleans_up_on_sigterm(runs):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    process = forked_zoo.popen(["ui", runs["gan"].path, runs["text"].path, "--port", "0"], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("page: "):
                break
        url = lines[-1].split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/"), lines
        host, port = url[len("http://"):-1].split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", "/ui/models.json")
        listed = json.loads(connection.getresponse().read())
        connection.request("GET", "/")
        page = connection.getresponse()
        page.read()
        connection.close()
        assert [m["name"] for m in listed["models"]] == ["gan", "text"]
        assert page.status == 200 and page.getheader("content-security-policy") == CONTENT_SECURITY_POLICY
        exported = Path(next(line for line in lines if line.startswith("exported to ")).split()[2])
        assert sorted(p.name for p in exported.iterdir()) == ["gan", "text"]
        process.send_signal(signal.SIGTERM)
        rest = process.stdout.read()
        assert process.wait(timeout=60) == 0, "".join(lines) + rest
    finally:
        if process.poll() is None:
            process.kill()
    assert not exported.exists()  # the export is gone


def test_zoo_serve_ui_serves_the_page_beside_the_api(runs, tmp_path):
    zoo.export(runs["gan"], tmp_path, "gan")
    process = forked_zoo.popen(["serve", tmp_path, "--ui", "--port", "0", "--grpc-port", "-1"],
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("page: "):
                break
        host, port = lines[-1].split()[-1][len("http://"):-1].split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        for path in ("/", "/v1/models/gan"):
            connection.request("GET", path)
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200, (path, lines)
        connection.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_zoo_ui_refuses_what_it_cannot_serve_in_one_line(tmp_path):
    result = forked_zoo.run(["ui", tmp_path / "missing.keras"], timeout=120)
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "missing.keras" in result.stderr
    (tmp_path / "unfinished").mkdir()
    result = forked_zoo.run(["ui", tmp_path / "unfinished"], timeout=120)
    assert result.returncode == 1 and "not a finished zoo run" in result.stderr
