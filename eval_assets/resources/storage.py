"""Where evaluation outputs live, in open formats: Parquet tables and JSON documents.

`EvaluationStore` is a folder, locally or under an S3 prefix, and the one place a path in it is
spelled: `OpenFormatIOManager` stores asset outputs by asset key and partition, and assets that
need a file directly (the predictions they stream, the champion's partition, the audit record)
ask the store for it by name (`predictions(model, pair)`), which gives the IO manager's path.

`EvaluationStore.lock` is a mutex between processes, kept where the outputs are: promotion holds
one per model around the champion's compare-and-set, which MLflow cannot do atomically.
"""

import json
import tempfile
import time
import uuid
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import filelock
import pandas as pd
import pyarrow.parquet as pq
from dagster import (
    ConfigurableIOManager,
    ConfigurableResource,
    InputContext,
    OutputContext,
    ResourceDependency,
    get_dagster_logger,
)
from dagster_aws.s3 import S3Resource

from eval_assets.core import atomic
from eval_assets.core.evaluation import to_json
from eval_assets.core.pipeline.prediction_files import ARROW_STRINGS
from eval_assets.partitions import key_parts

LOCK_POLL_S = 0.2
# S3's answers to a conditional request whose condition is false (412, or 404 for If-Match on an
# object gone), and to one that raced another conditional write to the same key (409).
_CONDITION_FAILED = ("PreconditionFailed", "412", "NoSuchKey", "404")
_CONDITIONAL_WRITE_IN_FLIGHT = ("ConditionalRequestConflict", "409")


class LockTimeout(TimeoutError):
    """Another process held a store lock for longer than the caller would wait."""


class EvaluationStore(ConfigurableResource):
    """A folder of evaluation outputs."""

    @abstractmethod
    def read(self, relative: str) -> bytes | None:
        """The bytes at `relative`, or None when absent."""

    @abstractmethod
    def write(self, relative: str, data: bytes) -> str:
        """Store `data` whole (never half-written); return its location."""

    @abstractmethod
    def write_file(self, relative: str, source: Path) -> str:
        """Store a local file's bytes whole, streamed; return its location."""

    @abstractmethod
    def location(self, relative: str) -> str:
        """A path or URL for people."""

    @abstractmethod
    def lock(self, relative: str, *, holder: str, wait_s: float) -> AbstractContextManager[None]:
        """Hold the lock named `relative` for the block, against every process using this store;
        wait at most `wait_s` for it, then raise `LockTimeout`. `holder` names the one holding
        it, for the error the others see. A holder that dies gives the lock up."""

    # Where each kind of output lives, relative to the store. Outputs the IO manager also
    # handles keep its layout (asset key, then one folder per partition dimension), so a file
    # written here is the asset's value downstream.

    def snapshot_copy(self, model: str, snapshot: str) -> str:
        """The published bytes of a snapshot, as `data_snapshot` stored them."""
        return _output_path([model, "data_snapshot"], snapshot, ".parquet")

    def model_version(self, model: str, version: str) -> str:
        """A version's registry facts (`version`: its partition key, ``model.v7``)."""
        return _output_path([model, "model_version"], version, ".json")

    def predictions(self, model: str, pair: str) -> str:
        """The predictions file of a (version, snapshot) pair (`pair`: its partition key)."""
        return _output_path([model, "predictions"], pair, ".parquet")

    def slice_metrics(self, model: str, pair: str) -> str:
        return _output_path([model, "slice_metrics"], pair, ".json")

    def gate_verdict(self, model: str, pair: str) -> str:
        return _output_path([model, "gate_verdict"], pair, ".json")

    def report_folder(self, model: str, pair: str) -> str:
        """The folder of a pair's HTML report and plots."""
        return _output_path([model, "evaluation_report"], pair, "")

    def audit(self, model: str, evaluation_key: str) -> str:
        """The write-once audit record of one evaluation key (not of a partition: a re-run of
        the same key finds it)."""
        return f"{model}/audit/{evaluation_key}.json"

    def champion_lock(self, model: str) -> str:
        """The lock held around a compare-and-set of the model's champion alias."""
        return f"{model}/champion.lock"

    def exists(self, relative: str) -> bool:
        with self.local_file(relative) as path:
            return path is not None

    @contextmanager
    def local_file(self, relative: str) -> Iterator[Path | None]:
        """A local path holding the file at `relative` (None when absent), for streaming reads."""
        data = self.read(relative)
        if data is None:
            yield None
            return
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(relative).name
            path.write_bytes(data)
            yield path

    @contextmanager
    def writing(self, relative: str) -> Iterator[Path]:
        """A local path to write; the file becomes the one at `relative`, whole, when the block
        ends without error, and on an error nothing is stored (here: `write_file` afterwards)."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(relative).name
            yield path
            self.write_file(relative, path)

    def read_frame(self, relative: str) -> pd.DataFrame | None:
        """A stored table; text comes back Arrow-backed, compact, and
        dictionary-encoded text as categories in sorted order (whatever each part's order)."""
        with self.local_file(relative) as path:
            if path is None:
                return None
            table = pq.read_table(path)
            # Columns are freed as they are converted, so a table never sits in memory twice.
            frame = table.to_pandas(
                types_mapper=ARROW_STRINGS.get, split_blocks=True, self_destruct=True
            )
        for column in frame.columns:
            values = frame[column]
            if isinstance(values.dtype, pd.CategoricalDtype) and not (
                values.cat.categories.is_monotonic_increasing
            ):
                frame[column] = values.cat.reorder_categories(sorted(values.cat.categories))
        return frame

    def write_frame(self, relative: str, frame: pd.DataFrame) -> str:
        with self.writing(relative) as path:
            frame.to_parquet(path, index=False)
        return self.location(relative)

    def read_json(self, relative: str) -> Any:
        data = self.read(relative)
        return None if data is None else json.loads(data)

    def write_json(self, relative: str, value: Any) -> str:
        return self.write(relative, to_json(value).encode())


class LocalEvaluationStore(EvaluationStore):
    """Outputs under a local folder."""

    root: str

    def read(self, relative: str) -> bytes | None:
        path = Path(self.root) / relative
        return path.read_bytes() if path.is_file() else None

    def exists(self, relative: str) -> bool:
        return (Path(self.root) / relative).is_file()

    @contextmanager
    def local_file(self, relative: str) -> Iterator[Path | None]:
        path = Path(self.root) / relative
        yield path if path.is_file() else None

    def write(self, relative: str, data: bytes) -> str:
        return str(atomic.write_bytes(Path(self.root) / relative, data))

    def write_file(self, relative: str, source: Path) -> str:
        return str(atomic.copy_file(source, Path(self.root) / relative))

    @contextmanager
    def writing(self, relative: str) -> Iterator[Path]:
        # Written beside its final name and renamed into place: no copy.
        with atomic.replacing(Path(self.root) / relative) as path:
            yield path

    def location(self, relative: str) -> str:
        return str(Path(self.root).resolve() / relative)

    @contextmanager
    def lock(self, relative: str, *, holder: str, wait_s: float) -> Iterator[None]:
        # An OS lock (flock): the kernel releases it when the holder exits, even when killed.
        path = Path(self.root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with filelock.FileLock(path, timeout=wait_s, poll_interval=LOCK_POLL_S):
                yield
        except filelock.Timeout as exc:
            raise LockTimeout(
                f"{holder}: waited {wait_s:.0f} s for the lock {path}, held by another process "
                "using the same store"
            ) from exc


class S3EvaluationStore(EvaluationStore):
    """Outputs under an S3 prefix; a PUT is all or nothing.

    A lock is an object created only if absent (a conditional PUT). A holder that dies cannot
    delete it, so it is a lease: one older than `lock_lease_s` (by the S3 server's clock) is taken
    over, again conditionally, by exactly one waiter. Keep the lease longer than any holder's block.
    """

    bucket: str
    prefix: str = "evaluations"
    s3: ResourceDependency[S3Resource]
    lock_lease_s: float = 300.0

    def _key(self, relative: str) -> str:
        return f"{self.prefix.strip('/')}/{relative}" if self.prefix else relative

    @contextmanager
    def local_file(self, relative: str) -> Iterator[Path | None]:
        # Downloaded to disk, not memory, so a large snapshot streams from a file.
        client = self.s3.get_client()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(relative).name
            try:
                client.download_file(self.bucket, self._key(relative), str(path))
            except client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    yield None
                    return
                raise
            yield path

    def exists(self, relative: str) -> bool:
        client = self.s3.get_client()
        try:
            client.head_object(Bucket=self.bucket, Key=self._key(relative))
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return False
            raise
        return True

    def read(self, relative: str) -> bytes | None:
        client = self.s3.get_client()
        try:
            return client.get_object(Bucket=self.bucket, Key=self._key(relative))["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    def write(self, relative: str, data: bytes) -> str:
        self.s3.get_client().put_object(Bucket=self.bucket, Key=self._key(relative), Body=data)
        return self.location(relative)

    def write_file(self, relative: str, source: Path) -> str:
        # Multipart for large files; the object appears only when the upload completes.
        self.s3.get_client().upload_file(str(source), self.bucket, self._key(relative))
        return self.location(relative)

    def location(self, relative: str) -> str:
        return f"s3://{self.bucket}/{self._key(relative)}"

    @contextmanager
    def lock(self, relative: str, *, holder: str, wait_s: float) -> Iterator[None]:
        client = self.s3.get_client()
        key = self._key(relative)
        body = json.dumps({"holder": holder, "token": uuid.uuid4().hex}).encode()
        deadline = time.monotonic() + wait_s
        log, waiting = get_dagster_logger(), False
        while (etag := self._put_if(client, key, body, IfNoneMatch="*")) is None:
            held = self._held(client, key)
            if held is None:
                continue  # released between the two requests
            current, age, other = held
            if age > self.lock_lease_s:
                log.warning(
                    f"taking over the lock {self.location(relative)} of {other}: "
                    f"its lease ended {age - self.lock_lease_s:.0f} s ago"
                )
                if (etag := self._put_if(client, key, body, IfMatch=current)) is not None:
                    break
                continue  # another waiter took it over first
            if time.monotonic() > deadline:
                raise LockTimeout(
                    f"{holder}: waited {wait_s:.0f} s for the lock {self.location(relative)}, "
                    f"held by {other} for {age:.0f} s (taken over after {self.lock_lease_s:.0f} s)"
                )
            if not waiting:
                log.info(f"waiting for the lock {self.location(relative)}, held by {other}")
                waiting = True
            time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            try:
                client.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
            except client.exceptions.ClientError as exc:
                if _error_code(exc) not in _CONDITION_FAILED:
                    raise
                log.warning(f"the lock {self.location(relative)} was taken over while held")

    def _put_if(self, client: Any, key: str, body: bytes, **condition: str) -> str | None:
        """The new object's ETag, or None when the condition failed (or raced another write)."""
        try:
            return client.put_object(Bucket=self.bucket, Key=key, Body=body, **condition)["ETag"]
        except client.exceptions.ClientError as exc:
            if _error_code(exc) in (*_CONDITION_FAILED, *_CONDITIONAL_WRITE_IN_FLIGHT):
                return None
            raise

    def _held(self, client: Any, key: str) -> tuple[str, float, str] | None:
        """(ETag, age in seconds on the server's clock, holder) of the lock object, if any."""
        try:
            found = client.get_object(Bucket=self.bucket, Key=key)
        except client.exceptions.NoSuchKey:
            return None
        try:
            other = json.loads(found["Body"].read())["holder"]
        except (ValueError, KeyError, TypeError):
            other = "an unknown holder"
        date = found["ResponseMetadata"].get("HTTPHeaders", {}).get("date")
        now = parsedate_to_datetime(date) if date else datetime.now(UTC)
        return found["ETag"], (now - found["LastModified"]).total_seconds(), other


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _output_path(asset_path: Sequence[str], partition_key: str | None, suffix: str) -> str:
    """``<asset key path>/<partition dims as folders><suffix>``: the IO manager's layout, which
    the store's named paths follow."""
    parts = list(asset_path)
    if partition_key:
        parts += key_parts(partition_key)
    return "/".join(parts) + suffix


class OpenFormatIOManager(ConfigurableIOManager):
    """Tables as Parquet, everything else as canonical JSON, in the evaluation store."""

    store: ResourceDependency[EvaluationStore]

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if obj is None:
            return
        partition = context.partition_key if context.has_partition_key else None
        path = context.asset_key.path
        if isinstance(obj, pd.DataFrame):
            where = self.store.write_frame(_output_path(path, partition, ".parquet"), obj)
        else:
            where = self.store.write_json(_output_path(path, partition, ".json"), obj)
        context.add_output_metadata({"stored_at": where})

    def load_input(self, context: InputContext) -> Any:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = context.asset_key.path
        frame = self.store.read_frame(_output_path(path, partition, ".parquet"))
        if frame is not None:
            return frame
        value = self.store.read_json(_output_path(path, partition, ".json"))
        if value is None:
            raise FileNotFoundError(
                f"no stored output for {'/'.join(path)} partition {partition}: materialize it first"
            )
        return value
