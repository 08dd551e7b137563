"""Reading Dagster run results in tests."""

from __future__ import annotations


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
