"""Shared pytest wiring: the real-service fixtures (MLflow server, moto S3, Dagster)."""

pytest_plugins = ["eval_assets_tests.support.services"]
