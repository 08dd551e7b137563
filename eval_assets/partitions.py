"""Partitions: one per registered model version, one per data snapshot, and their pairs.

Keys are readable and stable (``fraud_detector.v7``, ``2026-11-26``) and never contain the
characters Dagster reserves for multi-partition keys and ranges.
"""

from __future__ import annotations

import re

from dagster import DynamicPartitionsDefinition, MultiPartitionKey, MultiPartitionsDefinition

MODEL_DIM, SNAPSHOT_DIM = "model_version", "snapshot"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION_KEY = re.compile(r"^(?P<name>.+)\.v(?P<version>[0-9]+)$")


def model_version_partitions(model: str) -> DynamicPartitionsDefinition:
    """One partition per registered version of `model`."""
    return DynamicPartitionsDefinition(name=f"{model}_versions")


def snapshot_partitions(dataset: str) -> DynamicPartitionsDefinition:
    """One partition per complete snapshot of the golden dataset `dataset`."""
    return DynamicPartitionsDefinition(name=f"{dataset}_snapshots")


def evaluation_partitions(model: str, dataset: str) -> MultiPartitionsDefinition:
    """(model version x snapshot): one evaluation each."""
    return MultiPartitionsDefinition(
        {MODEL_DIM: model_version_partitions(model), SNAPSHOT_DIM: snapshot_partitions(dataset)}
    )


def version_key(model: str, version: str | int) -> str:
    """``fraud_detector.v7`` for version 7 of fraud_detector."""
    key = f"{model}.v{int(version)}"
    check_key(key)
    return key


def parse_version_key(key: str) -> tuple[str, str]:
    """(model, version) from ``fraud_detector.v7``."""
    match = _VERSION_KEY.match(key)
    if not match:
        raise ValueError(f"{key!r} is not a model version partition key like 'model.v7'")
    return match["name"], match["version"]


def pair_key(version: str, snapshot: str) -> MultiPartitionKey:
    """The (model version, snapshot) pair's partition key; as text, Dagster writes it ``v|s``.

    Not to be confused with `eval_assets.core.digests.evaluation_key`, the idempotency digest.
    """
    return MultiPartitionKey({MODEL_DIM: version, SNAPSHOT_DIM: snapshot})


def split_pair_key(key: str) -> tuple[str, str]:
    """(model version, snapshot) from a pair's partition key or its text ``v|s``."""
    version, snapshot = key_parts(key)
    return version, snapshot


def key_parts(key: str) -> list[str]:
    """A partition key's dimension keys in Dagster's order (one for a one-dimension key): the
    only place that knows how a multi-partition key is written as text."""
    # Dagster joins the dimension keys, in the order of the sorted dimension names, with "|",
    # which `check_key` keeps out of every one-dimension key.
    return str(key).split("|")


def check_key(key: str) -> str:
    """A partition key must be readable and must not contain Dagster's reserved characters."""
    if not _SAFE.match(key):
        raise ValueError(
            f"{key!r} cannot be a partition key: use letters, digits, '.', '_' and '-' "
            "(at most 128 characters, starting with a letter or digit)"
        )
    return key
