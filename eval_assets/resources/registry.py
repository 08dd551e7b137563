"""The model registry: versions, the champion alias, tags, artifacts and evaluation runs.

`MlflowModelRegistry` talks to MLflow (a tracking server, or an embedded SQLite file); the
tests' in-memory one is `eval_assets_tests.support.fakes.FakeModelRegistry`.
"""

import contextlib
import json
import tempfile
import threading
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from eval_assets.core.redact import link_url, redact_url, scrub, url_secrets

CHAMPION_ALIAS = "champion"
EVAL_KEY_TAG = "eval_assets.evaluation_key"
# Set at creation; the key tag itself is set only when the run is complete.
PENDING_KEY_TAG = "eval_assets.pending_evaluation_key"
# Rows MLflow reads to infer the logged dataset's column types.
SCHEMA_SAMPLE_ROWS = 1_000


_MLFLOW_IMPORT_LOCK = threading.Lock()


def _import_mlflow() -> None:
    """Import MLflow once, under a lock, before any of its submodules.

    Sensors tick in threads of one code server: two threads importing MLflow for the first time
    at once can each see the other's half-initialized package (``mlflow.version`` missing), and
    the failed import then leaves the process unable to import it again.
    """
    with _MLFLOW_IMPORT_LOCK:
        import mlflow  # noqa: F401


class RegistryUnavailable(RuntimeError):
    """The registry could not be reached; the caller retries later, nothing is dropped."""


class RegistryError(RuntimeError):
    """A registry failure whose original message quoted the tracking URI's credentials."""


@dataclass(frozen=True)
class VersionInfo:
    """What the registry says about one model version."""

    name: str
    version: str
    status: str
    run_id: str | None = None
    source: str | None = None
    created_ms: int = 0
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.status == "READY"


@dataclass(frozen=True)
class EvaluationRun:
    """An MLflow run that holds one evaluation; `created` is False when it already existed."""

    run_id: str
    created: bool
    url: str | None = None


class ModelRegistry(ConfigurableResource):
    """A registry of model versions with a movable `champion` alias and run tracking."""

    def check_available(self) -> None:
        """Raise `RegistryUnavailable` promptly if the registry cannot be reached (default: no-op).

        Sensors call it first: a client that retries for minutes would outlive the sensor's
        time budget and fail the tick with a timeout that does not say what was down.
        """

    @abstractmethod
    def list_versions(self, model: str) -> list[VersionInfo]:
        """Every version of `model`, oldest first."""

    @abstractmethod
    def get_version(self, model: str, version: str) -> VersionInfo:
        """One version with its aliases."""

    @abstractmethod
    def champion(self, model: str) -> VersionInfo | None:
        """The version the `champion` alias points at, or None."""

    @abstractmethod
    def download(self, model: str, version: str, destination: Path) -> Path:
        """Copy the version's model folder under `destination`; return its path."""

    def move_champion(self, model: str, version: str, expected: str | None) -> tuple[bool, str]:
        """Point `champion` at `version` only if it still points at `expected` (None: unset).

        Returns (moved, reason). The read and the move are two requests: callers serialize
        them (promotion holds a store lock per model), the registry cannot.
        """
        current = self.champion(model)
        current_version = current.version if current else None
        if current_version == str(version):
            return False, f"v{version} is already the champion"
        if current_version != expected:
            return False, (
                f"champion is now {current_version or 'unset'}, not {expected or 'unset'} as "
                "compared against; not moved"
            )
        self._point_champion_at(model, str(version))
        return True, f"champion moved from {expected or 'unset'} to {version}"

    @abstractmethod
    def _point_champion_at(self, model: str, version: str) -> None:
        """Set the `champion` alias, unconditionally."""

    @abstractmethod
    def set_version_tags(self, model: str, version: str, tags: dict[str, str]) -> None:
        """Write tags on a model version."""

    @abstractmethod
    def record_evaluation(
        self,
        model: str,
        evaluation_key: str,
        *,
        params: dict[str, str],
        tags: dict[str, str],
        metrics: dict[str, float],
        artifacts: dict[str, bytes],
        dataset: dict[str, Any] | None = None,
    ) -> EvaluationRun:
        """Log an evaluation to exactly one run per evaluation key (reused when it exists)."""


class MlflowModelRegistry(ModelRegistry):
    """MLflow's model registry and tracking through `MlflowClient`."""

    tracking_uri: str
    experiment_prefix: str = "eval-assets"
    artifact_root: str | None = None
    ui_url: str | None = None

    _client: Any = PrivateAttr(default=None)

    @property
    def client(self) -> Any:
        if self._client is None:
            _import_mlflow()
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    def check_available(self) -> None:
        # MLflow's client retries a refused connection for about 4 minutes (7 retries, exponential
        # backoff); one bounded GET on the server's /health answers in seconds instead.
        if not self.tracking_uri.startswith(("http://", "https://")):
            return
        _import_mlflow()
        import requests

        with _unavailable("reach", "the tracking server", self.tracking_uri):
            requests.get(f"{self.tracking_uri.rstrip('/')}/health", timeout=10)

    def list_versions(self, model: str) -> list[VersionInfo]:
        with _unavailable("list versions of", model, self.tracking_uri):
            versions = self.client.search_model_versions(f"name = '{model}'")
        return sorted((_info(v) for v in versions), key=lambda v: int(v.version))

    def get_version(self, model: str, version: str) -> VersionInfo:
        with _unavailable("read", f"{model} v{version}", self.tracking_uri):
            return _info(self.client.get_model_version(model, str(version)))

    def champion(self, model: str) -> VersionInfo | None:
        _import_mlflow()
        from mlflow.exceptions import MlflowException

        try:
            with _unavailable("read the champion of", model, self.tracking_uri):
                return _info(self.client.get_model_version_by_alias(model, CHAMPION_ALIAS))
        except MlflowException as exc:
            if getattr(exc, "error_code", "") in (
                "RESOURCE_DOES_NOT_EXIST",
                "INVALID_PARAMETER_VALUE",
            ):
                return None
            raise

    def download(self, model: str, version: str, destination: Path) -> Path:
        _import_mlflow()
        import mlflow.artifacts

        destination.mkdir(parents=True, exist_ok=True)
        with _unavailable("download", f"{model} v{version}", self.tracking_uri):
            uri = self.client.get_model_version_download_uri(model, str(version))
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(destination), tracking_uri=self.tracking_uri
            )
        return Path(local)

    def _point_champion_at(self, model: str, version: str) -> None:
        with _unavailable("move the champion of", model, self.tracking_uri):
            self.client.set_registered_model_alias(model, CHAMPION_ALIAS, version)

    def set_version_tags(self, model: str, version: str, tags: dict[str, str]) -> None:
        with _unavailable("tag", f"{model} v{version}", self.tracking_uri):
            for key, value in tags.items():
                self.client.set_model_version_tag(model, str(version), key, value)

    def record_evaluation(
        self,
        model: str,
        evaluation_key: str,
        *,
        params: dict[str, str],
        tags: dict[str, str],
        metrics: dict[str, float],
        artifacts: dict[str, bytes],
        dataset: dict[str, Any] | None = None,
    ) -> EvaluationRun:
        from mlflow.entities import Metric, Param, RunTag

        with _unavailable("log the evaluation of", model, self.tracking_uri):
            experiment_id = self._experiment(model)
            existing = self._finished_run(experiment_id, evaluation_key)
            if existing is not None:
                return EvaluationRun(
                    existing, created=False, url=self._run_url(experiment_id, existing)
                )
            # The key tag is written last, just before FINISHED, and only finished runs count: a
            # run whose writer was killed or lost MLflow half-way is never taken for the record.
            run = self.client.create_run(
                experiment_id,
                tags={PENDING_KEY_TAG: evaluation_key, **tags},
                run_name=tags.get("mlflow.runName"),
            )
            run_id = run.info.run_id
            try:
                self.client.log_batch(
                    run_id,
                    metrics=[Metric(k, float(v), 0, 0) for k, v in sorted(metrics.items())],
                    params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())],
                    tags=[RunTag(k, str(v)) for k, v in sorted(tags.items())],
                )
                with tempfile.TemporaryDirectory() as folder:
                    for name, data in artifacts.items():
                        target = Path(folder) / name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(data)
                    self.client.log_artifacts(run_id, folder)
                if dataset is not None:
                    self._log_dataset(run_id, dataset)
                self.client.set_tag(run_id, EVAL_KEY_TAG, evaluation_key)
                self.client.set_terminated(run_id, "FINISHED")
            except Exception:
                # Remove the half-logged run if MLflow still answers; the original error stands.
                with contextlib.suppress(Exception):
                    self.client.delete_run(run_id)
                raise
            # Two writers can both miss the lookup above and both log a run. Every writer keeps
            # the same one, the first finished, and a writer whose run is not it deletes its own.
            winner = self._finished_run(experiment_id, evaluation_key)
            if winner is not None and winner != run_id:
                self.client.delete_run(run_id)
                url = self._run_url(experiment_id, winner)
                return EvaluationRun(winner, created=False, url=url)
        return EvaluationRun(run_id, created=True, url=self._run_url(experiment_id, run_id))

    def _finished_run(self, experiment_id: str, evaluation_key: str) -> str | None:
        """The evaluation's run: the first FINISHED run tagged with the key (end time, then id)."""
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=(
                f"tags.`{EVAL_KEY_TAG}` = '{evaluation_key}' and attributes.status = 'FINISHED'"
            ),
            max_results=50,
        )
        if not runs:
            return None
        return min(runs, key=lambda r: (r.info.end_time or 0, r.info.run_id)).info.run_id

    def _experiment(self, model: str) -> str:
        name = f"{self.experiment_prefix}/{model}"
        found = self.client.get_experiment_by_name(name)
        if found:
            return found.experiment_id
        # Embedded MLflow would put artifacts under the working directory; keep them in state.
        location = f"{self.artifact_root.rstrip('/')}/{model}" if self.artifact_root else None
        return self.client.create_experiment(name, artifact_location=location)

    def _log_dataset(self, run_id: str, dataset: dict[str, Any]) -> None:
        import mlflow.data
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.types import ColSpec, Schema

        frame = dataset["frame"]
        columns = [c for c in frame.columns if c not in dataset.get("exclude", ())]
        # MLflow infers a schema cell by cell in Python (about a minute per million rows): infer
        # the column types on a sample, and whether a column may be missing on the whole frame.
        sample = mlflow.data.from_pandas(
            frame.head(SCHEMA_SAMPLE_ROWS)[columns],
            source=dataset["source"],
            name=dataset["name"],
            digest=dataset["digest"][:36],
            targets=dataset.get("targets"),
        )
        config = sample.to_dict()
        schema = config.get("schema")
        if sample.schema is not None:
            specs = [
                ColSpec(c.type, c.name, required=not frame[c.name].hasnans)
                for c in sample.schema.inputs
            ]
            schema = json.dumps({"mlflow_colspec": Schema(specs).to_dict()})
        entity = Dataset(
            name=config["name"],
            digest=config["digest"],
            source_type=config["source_type"],
            source=config["source"],
            schema=schema,
            profile=json.dumps({"num_rows": len(frame), "num_elements": len(frame) * len(columns)}),
        )
        self.client.log_inputs(
            run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", "evaluation")])]
        )

    def _run_url(self, experiment_id: str, run_id: str) -> str | None:
        # The link goes into Dagster metadata and the audit record: never the URI's credentials
        # (a browser asks for its own).
        base = self.ui_url or (self.tracking_uri if self.tracking_uri.startswith("http") else None)
        if not base:
            return None
        return f"{link_url(base).rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _info(version: Any) -> VersionInfo:
    return VersionInfo(
        name=version.name,
        version=str(version.version),
        status=str(version.status),
        run_id=version.run_id,
        # Shown in metadata and the audit record only; an artifact URI may carry userinfo.
        source=redact_url(version.source) if version.source else version.source,
        created_ms=int(version.creation_timestamp or 0),
        aliases=tuple(getattr(version, "aliases", None) or ()),
        tags=dict(version.tags or {}),
    )


class _unavailable:
    """Turn connection failures into RegistryUnavailable with the URI and what was attempted.

    Dagster stores an error's message and its whole cause chain, and MLflow's messages quote the
    URI it was given, credentials included ("API request to https://user:token@host/..."). So
    the URI is shown redacted, the message is scrubbed, and the original exception is chained
    only when the URI carries no credential to leak.
    """

    def __init__(self, action: str, what: str, uri: str):
        self.message = f"MLflow at {redact_url(uri)} is unavailable: could not {action} {what}"
        self.secrets = url_secrets(uri)

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        from mlflow.exceptions import MlflowException

        raw = str(exc)
        text = scrub(raw, self.secrets)
        cause = exc if not self.secrets and text == raw else None
        connection = isinstance(exc, (ConnectionError, TimeoutError, OSError)) or (
            isinstance(exc, MlflowException)
            and any(s in raw for s in ("Max retries", "Connection", "timed out", "API request"))
        )
        if connection:
            lines = text.splitlines() or [""]
            raise RegistryUnavailable(f"{self.message}: {lines[0][:300]}") from cause
        if text != raw:
            # Any other error stands as it is, unless its message quoted a credential.
            raise RegistryError(f"{type(exc).__name__}: {text}") from cause
        return False
