"""Reading Dagster run results in tests, and running the graph without drawing plots."""

from __future__ import annotations

import io
from typing import Any


def failure_text(result) -> str:
    """Every step failure of a run with its whole cause chain, as the Dagster UI shows it."""
    texts = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                texts.append(error.message)
                error = error.cause
    return "\n".join(texts)


def stub_plots(patch: Any) -> None:
    """Replace the report's plots by a 1-pixel PNG (`patch`: a pytest MonkeyPatch).

    Plots are most of a small evaluation's time and play no part in what the reliability tests
    prove; core/render/test_plots.py, core/render/test_html.py and dagster/test_assets.py cover
    the real ones.
    """
    import matplotlib.image

    import eval_assets.core.pipeline.compare

    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, [[0.0]], format="png")
    png = buffer.getvalue()
    names = ("roc_pr_overall.png", "confusion_matrices.png")
    patch.setattr(
        eval_assets.core.pipeline.compare, "point_images", lambda *a, **k: dict.fromkeys(names, png)
    )
    patch.setattr(eval_assets.core.pipeline.compare, "gate_changes_png", lambda *a, **k: png)
