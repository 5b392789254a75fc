"""Real handwritten digits (scikit-learn's) written as image folders, as a user's would be."""

from PIL import Image


def write_folder(root, images, labels, classes, per_class):
    """`root/digit_C/I.png` for the first `per_class` images of each class in `classes`."""
    for c in classes:
        folder = root / f"digit_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images[labels == c][:per_class]):
            Image.fromarray(image).save(folder / f"{i}.png")
    return root
