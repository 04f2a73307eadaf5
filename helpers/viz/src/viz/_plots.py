"""The plots pipeline steps keep re-drawing: distributions, missing values, before/after."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray

from viz._png import figure_png

# Colour-blind-safe pair (Okabe-Ito) for "before" / "after" style overlays.
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")


def _numeric_values(name: str, values: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(values)
    if array.dtype == object:
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name}: distribution plots need numeric values; got non-numeric data "
                f"(e.g. {array.flat[0]!r}). Plot value counts of a categorical column instead"
            ) from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: distribution plots need numeric values, got dtype {array.dtype}")
    flat = array.astype(np.float64).ravel()
    return flat[np.isfinite(flat)]


def distribution_png(
    data: ArrayLike | Mapping[str, ArrayLike],
    *,
    bins: int = 30,
    title: str | None = None,
    xlabel: str | None = None,
    size: tuple[float, float] = (6.0, 3.5),
) -> bytes:
    """Histogram of numeric values as PNG; nulls and infinities are left out.

    Pass a mapping ``{label: values}`` to overlay several distributions on the
    same bins (e.g. a column before and after imputation).
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    series: dict[str, NDArray[np.float64]]
    if isinstance(data, Mapping):
        if not data:
            raise ValueError("data: the mapping of distributions to plot is empty")
        series = {str(k): _numeric_values(str(k), v) for k, v in data.items()}
    else:
        series = {"values": _numeric_values("values", data)}
    present = [v for v in series.values() if v.size]
    figure = Figure(figsize=size)
    axes = figure.add_subplot()
    if present:
        everything = np.concatenate(present)
        lo, hi = float(everything.min()), float(everything.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        for colour, (label, values) in zip(_PALETTE * 4, series.items(), strict=False):
            axes.hist(
                values,
                bins=list(edges),
                alpha=0.6,
                color=colour,
                label=f"{label} (n={values.size})",
            )
        if len(series) > 1:
            axes.legend(loc="best", frameon=False)
    else:
        axes.text(0.5, 0.5, "no values to plot", ha="center", va="center")
    axes.set_ylabel("count")
    if xlabel:
        axes.set_xlabel(xlabel)
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return figure_png(figure)


def missing_map_png(
    frame: pd.DataFrame, *, title: str | None = "Missing values", max_rows: int = 2000
) -> bytes:
    """Rows x columns map of missing cells (dark = missing), with per-column null ratios.

    Tables longer than ``max_rows`` are sampled evenly (first and last rows kept).
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    if frame.shape[1] == 0:
        raise ValueError("the table has no columns: there is nothing to map")
    if max_rows < 1:
        raise ValueError(f"max_rows must be positive, got {max_rows}")
    mask = frame.isna().to_numpy(dtype=np.float64)
    if mask.shape[0] > max_rows:
        rows = np.unique(np.linspace(0, mask.shape[0] - 1, max_rows).round().astype(int))
        mask = mask[rows]
    ratios = (
        frame.isna().mean().to_numpy(dtype=np.float64) if len(frame) else np.zeros(frame.shape[1])
    )
    labels = [f"{c}\n{r:.0%}" for c, r in zip(frame.columns, ratios, strict=True)]
    width = min(2.0 + 0.9 * frame.shape[1], 16.0)
    figure = Figure(figsize=(width, 4.0))
    axes = figure.add_subplot()
    if mask.shape[0]:
        axes.imshow(mask, aspect="auto", cmap="Greys", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        axes.text(0.5, 0.5, "no rows", ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks(range(frame.shape[1]), labels, fontsize=8)
    axes.set_ylabel("row")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return figure_png(figure)


def _display(name: str, image: Any) -> NDArray[np.float64]:
    """An image as floats in [0, 1] for display: integer dtypes by their full range."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(
            f"{name}: expected a grayscale (H, W) or RGB(A) (H, W, 3|4) image, "
            f"got shape {image.shape}"
        )
    if image.size == 0:
        raise ValueError(f"{name}: the image is empty (shape {image.shape})")
    if image.dtype.kind in "iu":
        info = np.iinfo(image.dtype)
        return (image.astype(np.float64) - info.min) / (float(info.max) - info.min)
    if image.dtype.kind == "f":
        return np.clip(image.astype(np.float64), 0.0, 1.0)
    raise TypeError(f"{name}: unsupported image dtype {image.dtype}; use an integer or float array")


def before_after_png(
    before: NDArray[Any],
    after: NDArray[Any],
    *,
    titles: Sequence[str] = ("before", "after"),
    histograms: bool = True,
    bins: int = 64,
) -> bytes:
    """Two images side by side (same display scale), with intensity histograms below.

    Integer images are shown over their dtype's full range and float images over
    [0, 1], so a contrast change is visible rather than normalised away.
    """
    if len(titles) != 2:
        raise ValueError(f"titles must name exactly two images, got {list(titles)!r}")
    shown = [_display("before", before), _display("after", after)]
    rows = 2 if histograms else 1
    figure = Figure(figsize=(8.0, 3.6 * rows))
    grid = figure.subplots(rows, 2, squeeze=False)
    for column, (image, title) in enumerate(zip(shown, titles, strict=True)):
        axes = grid[0][column]
        if image.ndim == 2:
            axes.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            axes.imshow(image, interpolation="nearest")
        axes.set_title(f"{title}  (std {image.std():.3f})")
        axes.set_axis_off()
        if histograms:
            hist_axes = grid[1][column]
            hist_axes.hist(
                image.ravel(), bins=list(np.linspace(0.0, 1.0, bins + 1)), color=_PALETTE[column]
            )
            hist_axes.set_xlim(0.0, 1.0)
            hist_axes.set_xlabel("intensity (fraction of range)")
            hist_axes.set_ylabel("pixels")
    figure.tight_layout()
    return figure_png(figure)
