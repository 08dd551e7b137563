"""Where evaluation outputs live, in open formats: Parquet tables and JSON documents.

`EvaluationStore` is a folder, locally or under an S3 prefix; `OpenFormatIOManager` stores asset
outputs in it by asset key and partition, and assets that need another partition (the champion's
predictions) read it through the same paths.
"""

import json
import tempfile
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    ConfigurableIOManager,
    ConfigurableResource,
    InputContext,
    OutputContext,
    ResourceDependency,
)
from dagster_aws.s3 import S3Resource

from eval_assets.core import atomic
from eval_assets.core.evaluation import to_json

ARROW_STRINGS = {
    pa.string(): pd.StringDtype("pyarrow"),
    pa.large_string(): pd.StringDtype("pyarrow"),
}


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


class S3EvaluationStore(EvaluationStore):
    """Outputs under an S3 prefix; a PUT is all or nothing."""

    bucket: str
    prefix: str = "evaluations"
    s3: ResourceDependency[S3Resource]

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


def output_path(asset_path: list[str], partition_key: str | None, suffix: str) -> str:
    """``<asset key path>/<partition dims as folders><suffix>``."""
    parts = list(asset_path)
    if partition_key:
        parts += partition_key.split("|")
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
            where = self.store.write_frame(output_path(path, partition, ".parquet"), obj)
        else:
            where = self.store.write_json(output_path(path, partition, ".json"), obj)
        context.add_output_metadata({"stored_at": where})

    def load_input(self, context: InputContext) -> Any:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = context.asset_key.path
        frame = self.store.read_frame(output_path(path, partition, ".parquet"))
        if frame is not None:
            return frame
        value = self.store.read_json(output_path(path, partition, ".json"))
        if value is None:
            raise FileNotFoundError(
                f"no stored output for {'/'.join(path)} partition {partition}: materialize it first"
            )
        return value
