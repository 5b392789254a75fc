"""Fine-tune a small network on real photos and show where it looked (README figures).

    python examples/explain_objects.py          # writes docs/explain_overlay.png, docs/explain_methods.png

The photos: scikit-image's cat, coffee cup, astronaut and rocket cut out and pasted at a
random place on other scikit-image photos (tests/helpers/localisation.py). The network
has no published weights, so `zoo finetune --weights none` trains it from scratch; the
held-out images come from another seed.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import localisation  # noqa: E402

import zoo  # noqa: E402
from zoo.plots import heat_overlay, plot_image_rows  # noqa: E402


def main():
    localisation.register_tiny_cnn()
    work = Path(tempfile.mkdtemp(prefix="zoo-explain-"))
    try:
        images, labels, boxes = localisation.make_set(n_per_class=80, seed=0)
        data = localisation.write_folder(work / "photos", images, labels, boxes)
        run = zoo.finetune(data, model="tiny_cnn", weights="none", epochs=10, lr=3e-3, out=work / "run",
                           verbose=0, no_tensorboard=True)
        print(f"validation accuracy {run.metrics['val_accuracy']:.3f}")
        held_out, _, _ = localisation.make_set(n_per_class=3, seed=7)
        picks = list(held_out[:6])
        # The overlay exactly as `zoo explain` writes it, for one photo.
        photo = work / "photo.png"
        from PIL import Image

        Image.fromarray(picks[0]).save(photo)
        result = zoo.explain(run, [str(photo)], method="gradcam")
        (written,) = result.save(work / "out")
        shutil.copy(written["overlay"], ROOT / "docs" / "explain_overlay.png")
        rows = {"photo": np.stack(picks)}
        for method, title in (("gradcam", "Grad-CAM"), ("gradcam++", "Grad-CAM++"), ("saliency", "gradients"),
                              ("smoothgrad", "SmoothGrad"), ("integrated-gradients", "integrated\ngradients")):
            maps = zoo.explain(run, picks, method=method).maps
            rows[title] = np.stack([heat_overlay(image, heatmap) for image, heatmap in zip(picks, maps)])
        labels = [r["label"] for r in zoo.explain(run, picks).results]
        plot_image_rows(rows, ROOT / "docs" / "explain_methods.png",
                        title="held-out photos, predicted: " + ", ".join(labels))
        print("docs/explain_overlay.png, docs/explain_methods.png")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
