"""In-memory stand-ins for the registry and the notifier, for tests that run the asset graph
without MLflow or a webhook.

They keep state at class or module level because Dagster may re-create a resource per run: a
test reads what its runs did through a fresh copy.
"""

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from eval_assets.resources.notifier import Notifier
from eval_assets.resources.registry import (
    CHAMPION_ALIAS,
    EvaluationRun,
    ModelRegistry,
    VersionInfo,
)


@dataclass
class _FakeState:
    versions: dict[str, dict[str, tuple[VersionInfo, Path]]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)


_FAKE_STATES: dict[str, _FakeState] = {}


class FakeModelRegistry(ModelRegistry):
    """An in-memory registry for unit tests: versions are local model folders.

    Dagster may re-create a resource per run, so the state lives in a module-level table keyed
    by `namespace`, shared by every copy with the same namespace.
    """

    namespace: str = "default"

    @property
    def state(self) -> _FakeState:
        return _FAKE_STATES.setdefault(self.namespace, _FakeState())

    def register(self, model: str, folder: Path, status: str = "READY") -> VersionInfo:
        versions = self.state.versions.setdefault(model, {})
        version = str(len(versions) + 1)
        info = VersionInfo(
            model, version, status, run_id=f"run-{model}-{version}", source=str(folder)
        )
        versions[version] = (info, folder)
        return info

    def list_versions(self, model: str) -> list[VersionInfo]:
        return [self.get_version(model, v) for v in self.state.versions.get(model, {})]

    def get_version(self, model: str, version: str) -> VersionInfo:
        info, _ = self.state.versions[model][str(version)]
        aliases = (CHAMPION_ALIAS,) if self.state.aliases.get(model) == info.version else ()
        tags = self.state.tags.get((model, info.version), {})
        return VersionInfo(**{**info.__dict__, "aliases": aliases, "tags": dict(tags)})

    def champion(self, model: str) -> VersionInfo | None:
        version = self.state.aliases.get(model)
        return self.get_version(model, version) if version else None

    def download(self, model: str, version: str, destination: Path) -> Path:
        _, folder = self.state.versions[model][str(version)]
        target = destination / folder.name
        shutil.copytree(folder, target, dirs_exist_ok=True)
        return target

    def _point_champion_at(self, model: str, version: str) -> None:
        self.state.aliases[model] = version

    def set_version_tags(self, model: str, version: str, tags: dict[str, str]) -> None:
        self.state.tags.setdefault((model, str(version)), {}).update(tags)

    def record_evaluation(self, model: str, evaluation_key: str, **logged: Any) -> EvaluationRun:
        runs = self.state.runs
        if evaluation_key in runs:
            return EvaluationRun(runs[evaluation_key]["run_id"], created=False)
        run_id = f"fake-run-{len(runs) + 1}"
        runs[evaluation_key] = {"run_id": run_id, **logged}
        return EvaluationRun(run_id, created=True)


class RecordingNotifier(Notifier):
    """A notifier for tests that keeps what it was asked to send."""

    sent: ClassVar[list[dict[str, Any]]] = []

    def notify(self, event: str, payload: dict[str, Any]) -> bool:
        RecordingNotifier.sent.append({"event": event, **payload})
        return super().notify(event, payload)
