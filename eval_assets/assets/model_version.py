"""`model_version`: a registered version's facts and artifact digest, pinned at first sight."""

import tempfile
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DataVersion,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from eval_assets.assets.common import asset_args
from eval_assets.core.criteria import Criteria
from eval_assets.core.digests import artifact_digest
from eval_assets.core.models import ModelLoadError, load_model
from eval_assets.partitions import model_version_partitions, parse_version_key
from eval_assets.resources.registry import ModelRegistry

# The registry tag that pins a version's artifact digest when the version is first seen.
DIGEST_TAG = "eval_assets.artifact_sha256"


def build_model_version(criteria: Criteria, code_version: str) -> AssetsDefinition:
    """The model's `model_version` asset, partitioned by its registered versions."""
    model = criteria.model

    @asset(
        name="model_version",
        **asset_args(model, code_version),
        partitions_def=model_version_partitions(model),
        description="A registered model version: its artifact digest, pinned at first sight.",
        owners=["team:ml-platform"],
    )
    def model_version(
        context: AssetExecutionContext, model_registry: ModelRegistry
    ) -> Output[dict[str, Any]]:
        facts = version_facts(criteria, context.partition_key, model_registry)
        return Output(
            facts,
            data_version=DataVersion(facts["digest"]),
            metadata={
                "version": facts["version"],
                "digest": facts["digest"],
                "format": facts["format"],
                "run_id": MetadataValue.text(facts["run_id"] or ""),
                "source": MetadataValue.text(facts["source"] or ""),
                "aliases": ", ".join(facts["aliases"]) or "none",
                "status": facts["status"],
            },
        )

    return model_version


def version_facts(
    criteria: Criteria, partition_key: str, registry: ModelRegistry
) -> dict[str, Any]:
    """Registry facts and the artifact digest, pinned as a version tag when first seen."""
    model, version = parse_version_key(partition_key)
    info = registry.get_version(model, version)
    if not info.ready:
        raise Failure(f"{model} v{version} is {info.status}, not READY: evaluate it later")
    with tempfile.TemporaryDirectory() as folder:
        local = registry.download(model, version, Path(folder))
        digest = artifact_digest(local)
        try:
            loaded = load_model(
                local,
                allow_pickle=criteria.loading.allow_pickle,
                trusted_skops_types=criteria.loading.trusted_skops_types,
            )
        except ModelLoadError as exc:
            # Name the version and the file where it is registered, not a deleted download folder.
            where = info.source or f"{model} v{version}"
            text = str(exc).replace(str(local.resolve()), where).replace(str(local), where)
            raise Failure(f"{model} v{version} refused: {text}") from exc
        signature = (local / "MLmodel").read_text() if (local / "MLmodel").is_file() else ""
    pinned = info.tags.get(DIGEST_TAG)
    if pinned and pinned != digest:
        raise Failure(
            f"{model} v{version}: artifact digest {digest[:12]}... differs from the digest "
            f"{pinned[:12]}... recorded when the version was first seen; refusing to evaluate"
        )
    if not pinned:
        registry.set_version_tags(model, version, {DIGEST_TAG: digest})
    return {
        "model": model,
        "version": version,
        "partition": partition_key,
        "digest": digest,
        "format": loaded.format,
        "run_id": info.run_id,
        "source": info.source,
        "status": info.status,
        "aliases": list(info.aliases),
        "signature": _signature(signature),
    }


def _signature(mlmodel: str) -> str:
    marker = "signature:"
    return mlmodel[mlmodel.index(marker) :][:2000] if marker in mlmodel else "none"
