"""What every single asset of one model shares."""

from typing import Any


def asset_args(model: str, code_version: str) -> dict[str, Any]:
    """Key prefix, group, code version and the per-model tag of a model's `@asset`."""
    return {
        "key_prefix": [model],
        "group_name": model,
        "code_version": code_version,
        "tags": {"eval_assets/model": model},
    }
