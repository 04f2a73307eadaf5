"""Figure -> PNG bytes, deterministically."""

from __future__ import annotations

import base64
import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def figure_png(figure: Figure, *, dpi: int = 100) -> bytes:
    """Render ``figure`` to PNG bytes on an Agg canvas.

    The matplotlib "Software" stamp is left out, so the bytes depend only on the
    figure's content, its size and ``dpi`` (and the matplotlib version).
    """
    if not isinstance(figure, Figure):
        raise TypeError(f"expected a matplotlib Figure, got {type(figure).__name__}")
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi}")
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for inlining a PNG in HTML or Markdown."""
    if not png.startswith(_PNG_SIGNATURE):
        raise ValueError("data_uri expects PNG bytes (they must start with the PNG signature)")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
