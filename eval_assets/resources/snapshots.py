"""The snapshot store: golden evaluation datasets, one folder per snapshot.

Layout, locally or under an S3 prefix::

    <dataset>/<snapshot id>/data.parquet
    <dataset>/<snapshot id>/manifest.json     written last: a snapshot without it is incomplete

The manifest carries the data file's SHA-256, checked on every read, so a half-uploaded or
altered snapshot is never evaluated.
"""

import json
import tempfile
from abc import abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from dagster import ConfigurableResource, ResourceDependency
from dagster_aws.s3 import S3Resource

from eval_assets.core import atomic
from eval_assets.core.digests import file_digest
from eval_assets.partitions import check_key

DATA_FILE, MANIFEST_FILE = "data.parquet", "manifest.json"


class SnapshotStoreUnavailable(RuntimeError):
    """The store could not be reached; work waits, nothing is dropped."""


class SnapshotIntegrityError(ValueError):
    """A snapshot whose bytes do not match its manifest."""


@dataclass(frozen=True)
class SnapshotInfo:
    """A complete snapshot as its manifest describes it."""

    dataset: str
    snapshot_id: str
    sha256: str
    rows: int
    created_at: str
    location: str


class SnapshotStore(ConfigurableResource):
    """Where golden snapshots live."""

    @abstractmethod
    def list_snapshots(self, dataset: str) -> list[SnapshotInfo]:
        """Complete snapshots of `dataset`, oldest first."""

    @abstractmethod
    def manifest(self, dataset: str, snapshot_id: str) -> SnapshotInfo:
        """What a snapshot's manifest says now (SnapshotIntegrityError when it has none)."""

    @abstractmethod
    def fetch(self, dataset: str, snapshot_id: str, destination: Path) -> tuple[SnapshotInfo, Path]:
        """Copy a snapshot's data file under `destination`, verified against its manifest."""

    @abstractmethod
    def _put(self, relative: str, data: bytes) -> None:
        """Store bytes at a path relative to the store's root."""

    @abstractmethod
    def _put_file(self, relative: str, source: Path) -> None:
        """Store a local file's bytes at a path relative to the store's root, streamed."""

    def publish(self, dataset: str, snapshot_id: str, frame: pd.DataFrame) -> SnapshotInfo:
        """Write a frame as a snapshot (see `publish_file`)."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / DATA_FILE
            frame.to_parquet(path, index=False)
            return self.publish_file(dataset, snapshot_id, path)

    def publish_file(self, dataset: str, snapshot_id: str, path: Path) -> SnapshotInfo:
        """Publish a Parquet file as a snapshot: data first, the manifest last, so readers never
        see half of it. The file is streamed, never read into memory whole."""
        check_key(snapshot_id)
        info = SnapshotInfo(
            dataset=dataset,
            snapshot_id=snapshot_id,
            sha256=file_digest(path),
            rows=parquet_rows(path),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            location=f"{dataset}/{snapshot_id}",
        )
        self._put_file(f"{dataset}/{snapshot_id}/{DATA_FILE}", path)
        manifest = {k: v for k, v in info.__dict__.items() if k != "location"}
        self._put(
            f"{dataset}/{snapshot_id}/{MANIFEST_FILE}",
            (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode(),
        )
        return info


class LocalSnapshotStore(SnapshotStore):
    """Snapshots in a local folder."""

    root: str

    def list_snapshots(self, dataset: str) -> list[SnapshotInfo]:
        base = Path(self.root) / dataset
        if not base.is_dir():
            return []
        infos = [
            _info(json.loads(m.read_text()), str(m.parent)) for m in base.glob(f"*/{MANIFEST_FILE}")
        ]
        return sorted(infos, key=lambda i: (i.created_at, i.snapshot_id))

    def manifest(self, dataset: str, snapshot_id: str) -> SnapshotInfo:
        folder = Path(self.root) / dataset / snapshot_id
        manifest = folder / MANIFEST_FILE
        if not manifest.is_file():
            raise SnapshotIntegrityError(
                f"{folder}: no {MANIFEST_FILE}: the snapshot is incomplete"
            )
        return _info(json.loads(manifest.read_text()), str(folder))

    def fetch(self, dataset: str, snapshot_id: str, destination: Path) -> tuple[SnapshotInfo, Path]:
        info = self.manifest(dataset, snapshot_id)
        data = Path(info.location) / DATA_FILE
        _verify(data, info)
        return info, data

    def _put(self, relative: str, data: bytes) -> None:
        atomic.write_bytes(Path(self.root) / relative, data)

    def _put_file(self, relative: str, source: Path) -> None:
        atomic.copy_file(source, Path(self.root) / relative)


class S3SnapshotStore(SnapshotStore):
    """Snapshots under an S3 prefix (any S3-compatible endpoint through `AWS_ENDPOINT_URL`)."""

    bucket: str
    prefix: str = "snapshots"
    s3: ResourceDependency[S3Resource]

    def _key(self, relative: str) -> str:
        return f"{self.prefix.strip('/')}/{relative}" if self.prefix else relative

    def list_snapshots(self, dataset: str) -> list[SnapshotInfo]:
        client = self.s3.get_client()
        infos = []
        with _s3_errors(self.bucket):
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(f"{dataset}/")
            )
            for page in pages:
                for item in page.get("Contents", []):
                    if item["Key"].endswith(f"/{MANIFEST_FILE}"):
                        body = client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                        location = f"s3://{self.bucket}/{item['Key'].rsplit('/', 1)[0]}"
                        infos.append(_info(json.loads(body), location))
        return sorted(infos, key=lambda i: (i.created_at, i.snapshot_id))

    def manifest(self, dataset: str, snapshot_id: str) -> SnapshotInfo:
        client = self.s3.get_client()
        base = self._key(f"{dataset}/{snapshot_id}")
        with _s3_errors(self.bucket):
            try:
                body = client.get_object(Bucket=self.bucket, Key=f"{base}/{MANIFEST_FILE}")["Body"]
            except client.exceptions.NoSuchKey:
                raise SnapshotIntegrityError(
                    f"s3://{self.bucket}/{base}: no {MANIFEST_FILE}: the snapshot is incomplete"
                ) from None
            return _info(json.loads(body.read()), f"s3://{self.bucket}/{base}")

    def fetch(self, dataset: str, snapshot_id: str, destination: Path) -> tuple[SnapshotInfo, Path]:
        client = self.s3.get_client()
        base = self._key(f"{dataset}/{snapshot_id}")
        info = self.manifest(dataset, snapshot_id)
        with _s3_errors(self.bucket):
            target = destination / dataset / snapshot_id / DATA_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            client.download_file(self.bucket, f"{base}/{DATA_FILE}", str(partial))
        _verify(partial, info)
        partial.replace(target)
        return info, target

    def _put(self, relative: str, data: bytes) -> None:
        with _s3_errors(self.bucket):
            self.s3.get_client().put_object(Bucket=self.bucket, Key=self._key(relative), Body=data)

    def _put_file(self, relative: str, source: Path) -> None:
        # Multipart for large files; the object appears only when the upload completes.
        with _s3_errors(self.bucket):
            self.s3.get_client().upload_file(str(source), self.bucket, self._key(relative))


def parquet_rows(path: Path, shown: str | None = None) -> int:
    """Rows of a Parquet file; a file that is not one is refused naming it (`shown`, where the
    local path is a temporary copy), not with pyarrow's words alone."""
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        size = path.stat().st_size if path.exists() else 0
        what = "an empty file (0 bytes)" if size == 0 else f"not a Parquet file ({size:,} bytes)"
        raise SnapshotIntegrityError(f"{shown or path}: {what}: {exc}") from None


def _info(manifest: dict[str, Any], location: str) -> SnapshotInfo:
    return SnapshotInfo(
        dataset=manifest["dataset"],
        snapshot_id=manifest["snapshot_id"],
        sha256=manifest["sha256"],
        rows=int(manifest["rows"]),
        created_at=manifest["created_at"],
        location=location,
    )


def _verify(path: Path, info: SnapshotInfo) -> None:
    actual = file_digest(path)
    if actual != info.sha256:
        raise SnapshotIntegrityError(
            f"{info.location}/{DATA_FILE}: SHA-256 {actual[:12]}... does not match the manifest's "
            f"{info.sha256[:12]}...; the snapshot was altered or is incomplete"
        )


class _s3_errors:
    """Endpoint failures become SnapshotStoreUnavailable naming the bucket."""

    def __init__(self, bucket: str):
        self.bucket = bucket

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        from botocore.exceptions import BotoCoreError, EndpointConnectionError

        if isinstance(exc, (EndpointConnectionError, BotoCoreError, ConnectionError)):
            raise SnapshotStoreUnavailable(
                f"S3 bucket {self.bucket} is unavailable: {exc}"
            ) from exc
        return False
