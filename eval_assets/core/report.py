"""Pictures and documents of an evaluation, rendered to bytes (the caller decides where)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display: reports are rendered in servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eval_assets.core.gating import ModelMetrics  # noqa: E402
from eval_assets.core.slicing import OVERALL  # noqa: E402


def confusion_matrix_png(
    candidate: ModelMetrics,
    champion: ModelMetrics | None = None,
    slice_name: str = OVERALL,
    threshold: float | None = None,
) -> bytes:
    """Confusion matrices of the candidate (and champion) on one slice, as PNG bytes."""
    panels = [("candidate", candidate)] + ([("champion", champion)] if champion else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (title, metrics) in zip(axes[0], panels, strict=True):
        row = metrics.slices.loc[slice_name]
        matrix = np.array([[row["tn"], row["fp"]], [row["fn"], row["tp"]]], dtype=float)
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            colour = "white" if count > matrix.max() / 2 else "black"
            ax.text(j, i, f"{int(count):,}", ha="center", va="center", color=colour)
        ax.set_xticks([0, 1], ["predicted 0", "predicted 1"])
        ax.set_yticks([0, 1], ["actual 0", "actual 1"])
        at = f" at {threshold:g}" if threshold is not None else ""
        ax.set_title(f"{title}: {slice_name}{at}")
    fig.tight_layout()
    return _png(fig)


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    # A fixed metadata block keeps the bytes identical for identical inputs.
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
