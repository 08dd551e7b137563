"""eval-assets: model evaluation and promotion gating as Dagster assets."""
