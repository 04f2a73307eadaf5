"""Before/after image comparison on the `analytics` image (needs matplotlib)."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Output

IMAGE = "analytics"


def compare_images(
    before: Input[Dataset], after: Input[Dataset], page: Output[HTML], first_pair: Output[Artifact]
) -> int:
    """Side-by-side PNGs with histograms for every image pair; return the pair count."""
    from pathlib import Path

    import numpy as np
    from viz import before_after_png, images_html

    with np.load(before.path) as old, np.load(after.path) as new:
        names = sorted(old.files)
        pngs = {name: before_after_png(old[name], new[name]) for name in names}
    Path(first_pair.path).write_bytes(pngs[names[0]])
    first_pair.metadata["format"] = "png"
    Path(page.path).write_text(images_html(pngs, title="Contrast: before / after"), "utf-8")
    return len(pngs)
