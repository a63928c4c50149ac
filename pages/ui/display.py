"""Display helpers: literal text in markdown, one-line errors, image grids, curves, durations."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from gda_core.errors import GDAError

_MARKDOWN_SPECIAL = "\\`*_{}[]<>()#+-.!|~$"


def plain(text: object) -> str:
    """Text shown literally inside st.markdown: user-provided names (classes, files, runs) and
    sentences that quote them must not be read as markdown (links, emphasis, tables)."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in str(text))


def show_error(exc: BaseException) -> None:
    """A user-facing one-line error (never a traceback), shown literally: messages quote file and
    class names from users' archives, which must not be read as markdown."""
    st.error(plain(
        str(exc)
        if isinstance(exc, GDAError)
        else f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    ))


def upscaled(images: np.ndarray, target: int = 64) -> np.ndarray:
    """Nearest-neighbour upscale of uint8 (..., H, W, C) so the smaller side is about ``target`` px;
    single-channel images become (…, H, W) for st.image."""
    h = images.shape[-3]
    f = max(1, int(round(target / h)))
    out = images.repeat(f, axis=-3).repeat(f, axis=-2) if f > 1 else images
    return out[..., 0] if out.shape[-1] == 1 else out


def show_grid(grid: np.ndarray, *, caption: str | None = None, scale: int = 4, width: str | int = "content") -> None:
    """Show a uint8 grid image enlarged with crisp pixels."""
    img = grid.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else grid
    st.image(img[..., 0] if img.shape[-1] == 1 else img, caption=caption, width=width, output_format="PNG")


def curves_figure(records: list[dict], keys: list[str] | None = None, *, title: str = "Training losses", height: int = 320) -> go.Figure:
    """Plotly line chart of history records (one line per key, x = step)."""
    fig = go.Figure()
    if records:
        keys = keys or [k for k in records[-1] if k not in ("step", "time_s")]
        steps = [r.get("step", i) for i, r in enumerate(records)]
        for k in keys:
            ys = [r.get(k) for r in records]
            if any(v is not None for v in ys):
                fig.add_trace(go.Scatter(x=steps, y=ys, mode="lines", name=k))
    fig.update_layout(
        title=title, height=height, margin={"l": 40, "r": 20, "t": 40, "b": 40}, xaxis_title="step", legend={"orientation": "h", "y": -0.25}
    )
    return fig


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(max(0, s))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s")
