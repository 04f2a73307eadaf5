"""Image steps on the light `base` image (numpy + imgproc only)."""

from kfp.dsl import Dataset, Input, Output

IMAGE = "base"
# A light first step that should not wait for an image pull: its pod installs numpy
# (the only module it imports) from the private index, pinned and hash-checked.
PACKAGES = ["make_sample_images"]


def make_sample_images(seed: int, count: int, size: int, images: Output[Dataset]) -> None:
    """Synthetic low-contrast grayscale scenes (gradient, discs, noise) as one .npz."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    scenes = {}
    for index in range(count):
        scene = 0.5 * xx + 0.3 * yy
        for _ in range(3):
            cy, cx, radius = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
            scene = scene + 0.4 * (((yy - cy) ** 2 + (xx - cx) ** 2) < radius**2)
        scene = scene + rng.normal(0.0, 0.03, scene.shape)
        # Squeeze into a narrow band: the washed-out look contrast enhancement is for.
        low = 90 + 40 * (scene - scene.min()) / (scene.max() - scene.min())
        scenes[f"image_{index}"] = low.round().astype(np.uint8)
    from pathlib import Path

    # A file handle, not the path: given a path, numpy would append ".npz" to it.
    with Path(images.path).open("wb") as handle:
        np.savez_compressed(handle, **scenes)
    images.metadata["count"] = count


def enhance_contrast(images: Input[Dataset], method: str, enhanced: Output[Dataset]) -> float:
    """Enhance every image (stretch | equalize | adaptive | gamma); return the mean std gain."""
    from pathlib import Path

    import numpy as np
    from imgproc import adjust_gamma, equalize_adaptive, equalize_histogram, stretch_contrast

    methods = {
        "stretch": lambda image: stretch_contrast(image, 1.0, 99.0),
        "equalize": equalize_histogram,
        # Small images: fewer, larger tiles and a looser clip than the defaults.
        "adaptive": lambda image: equalize_adaptive(image, tiles=(4, 4), clip_limit=0.04),
        "gamma": lambda image: adjust_gamma(image, 0.7),
    }
    if method not in methods:
        raise ValueError(f"method must be one of {sorted(methods)}, got {method!r}")
    with np.load(images.path) as archive:
        originals = {name: archive[name] for name in archive.files}
    results = {name: methods[method](image) for name, image in originals.items()}
    with Path(enhanced.path).open("wb") as handle:
        np.savez_compressed(handle, **results)
    gains = [results[n].std() / max(float(originals[n].std()), 1e-9) for n in originals]
    enhanced.metadata["method"] = method
    return float(np.mean(gains))
