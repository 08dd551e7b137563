"""The pure evaluation library: contract, slicing, metrics, bootstrap, gating, reports.

It imports neither dagster nor mlflow, so the Dagster skin and the command line tool share it.
"""

# Bump when a change alters metrics, intervals or verdicts: it is part of every evaluation key.
EVALUATOR_VERSION = "0.2.0"
