"""Exact per-slice metrics of rows read in batches, in memory that does not grow with the rows.

Counts, loss sums and fairness counts are sums over batches. ROC AUC, average precision, the
curves and the bootstrap's score quantiles need the rows in score order: each batch's scores,
labels and slice membership bits are sorted, in numpy while they fit in a fixed memory budget and
by DuckDB beyond it (within the same limit, spilling to disk), and the sorted rows come back in
fixed-size chunks that are reduced tie group by tie group, each slice carrying its running
positive and negative counts from chunk to chunk.
The formulas are those of `binary.slice_metrics` (Mann-Whitney with ties counted half, in
integers; scikit-learn's average precision step sum); the results agree with it, and so with
scikit-learn, to 1e-12 (tests), and do not depend on which sort ran, on DuckDB's threads or on
the order of tied rows.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from eval_assets.core.bootstrap import edge_levels
from eval_assets.core.evaluation import assemble_metrics
from eval_assets.core.metrics.binary import (
    COUNT_COLUMNS,
    confusion_metrics,
    fairness_from_counts,
    row_losses,
    validate_inputs,
    validate_threshold,
)
from eval_assets.core.metrics.curves import thin_curve
from eval_assets.core.slicing import SlicePlan, slice_bytes, unpack_slices
from eval_assets.core.vocabulary import METRIC_NAMES, ModelMetrics

# The sort's memory. Rows whose in-memory sort fits in it (about 40 bytes a row with 22 slices:
# 1.6 million rows) are sorted by numpy, which is several times faster on so few; beyond, DuckDB
# sorts within the same limit and spills sorted runs to a temporary folder. Each DuckDB thread
# needs its own sort memory, so its threads are fixed too (by default DuckDB takes one per core,
# and on 8 cores 64 MB runs out before 2 million rows).
SORT_MEMORY_BYTES = 64 << 20
SORT_THREADS = 2
# Rows sorted in numpy at most (tests set it to 0 to send every sort through DuckDB).
_IN_MEMORY_SORT_BYTES = SORT_MEMORY_BYTES
# Sorted rows are reduced this many at a time (a fixed size: sums do not depend on DuckDB).
_SORTED_CHUNK = 1 << 18


@dataclass(frozen=True)
class ScoreBatch:
    """Consecutive rows of one model's evaluation: labels, scores, slice membership as bit sets
    (bytes x rows, in the plan's slice order: `SlicePlan.bits`) and each fairness attribute's
    group index."""

    y: np.ndarray
    score: np.ndarray
    bits: np.ndarray
    groups: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class SortedSummary:
    """Everything one model's scores in order give: the point metrics, the overall ROC and PR
    curves (thinned for drawing) and the score quantiles the paired bootstrap bins by."""

    metrics: ModelMetrics
    curve: dict[str, Any]
    positive_quantiles: np.ndarray
    negative_quantiles: np.ndarray

    def record(self) -> dict[str, Any]:
        """The curve and quantiles as JSON-ready lists (floats round-trip exactly)."""
        return {
            "curve": {k: np.asarray(v).tolist() for k, v in self.curve.items()},
            "score_quantiles": {
                "positive": self.positive_quantiles.tolist(),
                "negative": self.negative_quantiles.tolist(),
            },
        }


def streamed_metrics(
    batches: Iterable[ScoreBatch],
    plan: SlicePlan,
    threshold: float,
    bins: int,
    workdir: str | Path | None = None,
) -> SortedSummary:
    """Metrics of every slice and fairness attribute, equal to `evaluation.model_metrics` on
    all rows at once; the quantiles are those `bootstrap.Binning.of` takes at `bins`."""
    threshold = validate_threshold(threshold)
    names = plan.names
    # Slice membership travels as bit sets: byte k holds slices 8k to 8k + 7.
    n_bytes = slice_bytes(len(names))
    schema = pa.schema(
        [("score", pa.float64()), ("label", pa.int8())]
        + [(f"slices{k}", pa.uint8()) for k in range(n_bytes)]
    )
    totals = _Totals(len(names), {a: len(g) for a, g in plan.groups.items()})

    def records() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            y, score = validate_inputs(batch.y, batch.score)
            bits = np.asarray(batch.bits, dtype=np.uint8)
            if bits.shape != (n_bytes, len(y)):
                raise ValueError(
                    f"slice bits must be {n_bytes} x {len(y)} bytes for {len(names)} slices, "
                    f"got {bits.shape}"
                )
            totals.add(y, score, bits, batch.groups, threshold)
            # Each batch in score order: the sort of all rows then merges sorted runs, and the
            # batches are sorted while the next one is read (the sort releases the GIL).
            order = np.argsort(-score)
            yield pa.record_batch(
                [pa.array(score[order]), pa.array(y[order]), *bits[:, order]], schema=schema
            )

    with (
        # The overall curve is thinned on this thread while the next sorted chunk is reduced.
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="curve") as drawer,
        tempfile.TemporaryDirectory(dir=workdir, prefix="sort-") as folder,
    ):
        ranking: _Ranking | None = None
        for score, y, bits in _sorted(records(), schema, Path(folder)):
            if ranking is None:  # every batch has been counted once the sorted rows flow
                ranking = _Ranking(
                    totals.positives, totals.support - totals.positives, bins, drawer
                )
            ranking.add(score, y, unpack_slices(bits, len(names)))
        if ranking is None:
            ranking = _Ranking(totals.positives, totals.support - totals.positives, bins, drawer)
        ranking.finish()

    counts = totals.counts()
    rates = confusion_metrics(counts["tp"], counts["fp"], counts["tn"], counts["fn"])
    with np.errstate(divide="ignore", invalid="ignore"):
        support = counts["support"].astype(np.float64)
        values = {
            "roc_auc": ranking.auc(),
            "pr_auc": ranking.ap(),
            "log_loss": np.where(support > 0, totals.log_loss / support, np.nan),
            "brier": np.where(support > 0, totals.brier / support, np.nan),
            **rates,
        }
    table = pd.DataFrame({"slice": names})
    for name in COUNT_COLUMNS:
        table[name] = counts[name].astype(np.int64)
    for name in METRIC_NAMES:
        table[name] = np.asarray(values[name], dtype=np.float64)
    fairness = {
        attribute: fairness_from_counts(plan.groups[attribute], *totals.groups[attribute])
        for attribute in plan.groups
    }
    metrics = assemble_metrics(table, fairness)
    positive, negative = ranking.quantiles()
    return SortedSummary(metrics, ranking.curve(), positive, negative)


class _Totals:
    """Per-slice counts and loss sums, and per-group fairness counts, summed over batches."""

    def __init__(self, n_slices: int, groups: Mapping[str, int]) -> None:
        self.support = np.zeros(n_slices, dtype=np.int64)
        self.positives = np.zeros(n_slices, dtype=np.int64)
        self.tp = np.zeros(n_slices, dtype=np.int64)
        self.predicted = np.zeros(n_slices, dtype=np.int64)
        self.log_loss = np.zeros(n_slices)
        self.brier = np.zeros(n_slices)
        # Per attribute: support, positives, selected, true positives per group.
        self.groups = {a: np.zeros((4, n), dtype=np.int64) for a, n in groups.items()}

    def add(
        self,
        y: np.ndarray,
        score: np.ndarray,
        bits: np.ndarray,
        groups: Mapping[str, np.ndarray],
        threshold: float,
    ) -> None:
        """Count one batch; `bits` is its slice membership as `SlicePlan.bits` gives it."""
        predicted = score >= threshold
        log_loss, brier = row_losses(y, score)
        # 0 negative, 1 positive, 2 flagged negative, 3 flagged positive.
        outcome = y.astype(np.intp) + 2 * predicted
        # Rows are counted per value of each membership byte (256 values, 8 slices), then each
        # slice sums the values that have its bit: a few bincounts over the batch instead of
        # finding every slice's rows (the sums differ from row-by-row ones in the last bits).
        for k in range(len(bits)):
            byte = bits[k].astype(np.intp)
            table = np.bincount(byte * 4 + outcome, minlength=1024).reshape(256, 4)
            losses = [np.bincount(byte, weights=w, minlength=256) for w in (log_loss, brier)]
            for bit in range(min(8, len(self.support) - 8 * k)):
                j, has = 8 * k + bit, _HAS_BIT[bit]
                counts = table[has].sum(axis=0)
                self.support[j] += counts.sum()
                self.positives[j] += counts[1] + counts[3]
                self.predicted[j] += counts[2] + counts[3]
                self.tp[j] += counts[3]
                self.log_loss[j] += losses[0][has].sum()
                self.brier[j] += losses[1][has].sum()
        for attribute, code in groups.items():
            table = self.groups[attribute]
            n = table.shape[1]
            cells = np.bincount(code.astype(np.intp) * 4 + outcome, minlength=4 * n).reshape(n, 4)
            table[0] += cells.sum(axis=1)
            table[1] += cells[:, 1] + cells[:, 3]
            table[2] += cells[:, 2] + cells[:, 3]
            table[3] += cells[:, 3]

    def counts(self) -> dict[str, np.ndarray]:
        fp = self.predicted - self.tp
        negatives = self.support - self.positives
        return {
            "support": self.support,
            "positives": self.positives,
            "negatives": negatives,
            "tp": self.tp,
            "fp": fp,
            "tn": negatives - fp,
            "fn": self.positives - self.tp,
        }


# The byte values (0 to 255) that have bit b set, for each b.
_HAS_BIT = [((np.arange(256) >> b) & 1).astype(bool) for b in range(8)]


def _sorted(
    records: Iterator[pa.RecordBatch], schema: pa.Schema, folder: Path
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(scores, labels, bit sets) in fixed-size chunks of descending score: sorted in memory
    when every row fits in the sort's memory, else by DuckDB."""
    # Held as Arrow, then copied to numpy beside a sort index and the negated scores.
    row_bytes = 2 * sum(field.type.byte_width for field in schema) + 16
    held: deque[pa.RecordBatch] = deque()
    size = 0
    for batch in records:
        held.append(batch)
        size += batch.num_rows * row_bytes
        if size > _IN_MEMORY_SORT_BYTES:
            yield from _sorted_by_duckdb(_drained(held, records), schema, folder)
            return
    yield from _sorted_in_memory(held)


def _drained(
    held: deque[pa.RecordBatch], rest: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """The held batches, each let go as it is passed on, then the rest."""
    while held:
        yield held.popleft()
    yield from rest


def _sorted_in_memory(
    held: deque[pa.RecordBatch],
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    if not held:
        return
    runs = len(held)
    table = pa.Table.from_batches(held)
    held.clear()
    columns = [column.to_numpy() for column in table.columns]
    del table
    # Each batch comes sorted (`streamed_metrics` sorts it as it counts it): the argsort merges
    # sorted runs, and a single batch is in order already.
    order = np.argsort(-columns[0]) if runs > 1 else None
    for start in range(0, len(columns[0]), _SORTED_CHUNK):
        rows = (
            slice(start, start + _SORTED_CHUNK)
            if order is None
            else order[start : start + _SORTED_CHUNK]
        )
        yield columns[0][rows], columns[1][rows], np.stack([c[rows] for c in columns[2:]])


def _sorted_by_duckdb(
    records: Iterator[pa.RecordBatch], schema: pa.Schema, folder: Path
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    failure: list[BaseException] = []

    def guarded() -> Iterator[pa.RecordBatch]:
        try:
            yield from records
        except BaseException as error:  # re-raised below as itself, not as DuckDB's wrapper
            failure.append(error)
            raise

    connection = duckdb.connect(
        config={
            "memory_limit": f"{SORT_MEMORY_BYTES >> 20}MB",
            "threads": SORT_THREADS,
            "temp_directory": str(folder),
            "preserve_insertion_order": False,
        }
    )
    try:
        connection.register("rows", pa.RecordBatchReader.from_batches(schema, guarded()))
        reader = connection.sql("SELECT * FROM rows ORDER BY score DESC").to_arrow_reader(
            _SORTED_CHUNK
        )
        sorted_rows = Cutter(
            [column.to_numpy(zero_copy_only=False) for column in batch.columns] for batch in reader
        )
        while chunk := sorted_rows.take(_SORTED_CHUNK):
            yield chunk[0], chunk[1], np.stack(chunk[2:])
    except (duckdb.Error, OSError):  # a failed scan can surface through Arrow as an OSError
        if failure:
            raise failure[0] from None
        raise
    finally:
        connection.close()


class Cutter:
    """Rows in chosen numbers from a stream of parts of any length; a part is a list of
    equally long arrays (its columns)."""

    def __init__(self, parts: Iterator[list[np.ndarray]]) -> None:
        self.parts = parts
        self.held: list[np.ndarray] | None = None

    def take(self, n: int) -> list[np.ndarray]:
        """The next `n` rows' columns; fewer at the end of the stream, none after it."""
        pieces = [] if self.held is None else [self.held]
        have = 0 if self.held is None else len(self.held[0])
        while have < n:
            part = next(self.parts, None)
            if part is None:
                break
            pieces.append(part)
            have += len(part[0])
        if have == 0:
            return []
        joined = [np.concatenate(c) for c in zip(*pieces, strict=True)]
        self.held = [c[n:] for c in joined]
        return [c[:n] for c in joined]


class _Ranking:
    """Tie-aware ranking sums over rows arriving in descending score order.

    A tie group can straddle chunks, so the last group of each chunk is held as per-slice counts
    (not rows) until a lower score shows up: memory stays one chunk, whatever the ties.
    """

    def __init__(
        self,
        positives: np.ndarray,
        negatives: np.ndarray,
        bins: int,
        drawer: Executor,
    ) -> None:
        self.n_pos = positives
        self.n_neg = negatives
        n_slices = len(positives)
        self.cum_pos = np.zeros(n_slices, dtype=np.int64)
        self.cum_neg = np.zeros(n_slices, dtype=np.int64)
        self.twice_u = np.zeros(n_slices, dtype=np.int64)
        self.ap_sum = np.zeros(n_slices)
        self.pending: tuple[float, np.ndarray, np.ndarray] | None = None
        # Quantile order statistics: ascending ranks among each class, looked up as they pass.
        self.wanted = [
            _quantile_ranks(int(n), levels)
            for n, levels in zip((positives[0], negatives[0]), edge_levels(bins), strict=True)
        ]
        self.seen = [0, 0]
        self.found: list[dict[int, float]] = [{}, {}]
        self.roc: list[np.ndarray] = []
        self.pr: list[np.ndarray] = []
        self.vertices: list[tuple[np.ndarray, np.ndarray]] = []
        self.drawer = drawer
        self.drawing: Future[None] | None = None

    def add(self, score: np.ndarray, y: np.ndarray, members: np.ndarray) -> None:
        self._order_statistics(score, y)
        positive = y.astype(bool)
        if self.pending is not None:
            value, pos, neg = self.pending
            tied = int(np.searchsorted(-score, -value, side="right"))
            if tied:
                pos += members[:tied][positive[:tied]].sum(axis=0)
                neg += members[:tied][~positive[:tied]].sum(axis=0)
                score, positive, members = score[tied:], positive[tied:], members[tied:]
            if len(score) == 0:
                return
            self._close(pos, neg)
            self.pending = None
        # Rows tied with the chunk's lowest score may continue in the next chunk.
        last = int(np.searchsorted(-score, -score[-1], side="left"))
        self.pending = (
            float(score[-1]),
            members[last:][positive[last:]].sum(axis=0, dtype=np.int64),
            members[last:][~positive[last:]].sum(axis=0, dtype=np.int64),
        )
        if last:
            self._groups(score[:last], positive[:last], members[:last])
        self._draw()

    def finish(self) -> None:
        if self.pending is not None:
            _, pos, neg = self.pending
            self._close(pos, neg)
            self.pending = None
        self._draw()
        if self.drawing is not None:
            self.drawing.result()
            self.drawing = None

    def _groups(self, score: np.ndarray, positive: np.ndarray, members: np.ndarray) -> None:
        """Whole tie groups (none continues past these rows).

        As `metrics._auc_ap_in_slice` does on all rows: only positives are visited; each one's
        tie group bounds give, per slice, the rows and positives above it and through its group.
        """
        ascending = -score
        positive_rows = np.flatnonzero(positive)
        value = ascending[positive_rows]
        group_start = np.searchsorted(ascending, value, side="left")
        group_end = np.searchsorted(ascending, value, side="right")
        for j in range(members.shape[1]):
            mask = members[:, j]
            in_slice = mask[positive_rows]
            positives = positive_rows[in_slice]
            starts, ends = group_start[in_slice], group_end[in_slice]
            if j == 0:  # the overall slice holds every row
                rows_above, rows_through, support = starts, ends, len(score)
            else:
                rows_before = _RowsBefore(mask)
                rows_above, rows_through = rows_before(starts), rows_before(ends)
                support = rows_before.total
            pos_through = np.searchsorted(positives, ends)
            neg_above = rows_above - np.searchsorted(positives, starts)
            neg_through = rows_through - pos_through
            cum_pos, cum_neg = self.cum_pos[j], self.cum_neg[j]
            # Twice Mann-Whitney U: negatives strictly below count twice, tied ones once.
            self.twice_u[j] += int(
                np.sum(2 * (self.n_neg[j] - cum_neg - neg_through) + (neg_through - neg_above))
            )
            self.ap_sum[j] += float(
                np.sum((cum_pos + pos_through) / (cum_pos + cum_neg + rows_through))
            )
            self.cum_pos[j] += len(positives)
            self.cum_neg[j] += support - len(positives)
        # The overall curve: a vertex at the end of every tie group.
        ends = np.append(np.flatnonzero(score[1:] != score[:-1]), len(score) - 1)
        tps = np.cumsum(positive, dtype=np.int64)[ends]
        base_pos = self.cum_pos[0] - tps[-1]
        base_neg = self.cum_neg[0] - (len(score) - tps[-1])
        self.vertices.append((base_neg + ends + 1 - tps, base_pos + tps))

    def _close(self, pos: np.ndarray, neg: np.ndarray) -> None:
        """One tie group, with `pos` positives and `neg` negatives in each slice."""
        through_pos = self.cum_pos + pos
        through_neg = self.cum_neg + neg
        self.twice_u += pos * (2 * (self.n_neg - through_neg) + neg)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(pos > 0, through_pos / (through_pos + through_neg), 0.0)
        self.ap_sum += pos * precision
        self.cum_pos, self.cum_neg = through_pos, through_neg
        if pos[0] or neg[0]:
            self.vertices.append((through_neg[:1].copy(), through_pos[:1].copy()))

    def _draw(self) -> None:
        """Turn the overall slice's new vertices into thinned ROC and PR points, on the drawer's
        thread while the next chunk is reduced: one chunk's at a time, so the curves are built in
        chunk order and memory holds the vertices of two chunks at most."""
        vertices, self.vertices = self.vertices, []
        if not vertices or self.n_pos[0] == 0 or self.n_neg[0] == 0:
            return
        if self.drawing is not None:
            self.drawing.result()
        self.drawing = self.drawer.submit(self._thin, vertices)

    def _thin(self, vertices: list[tuple[np.ndarray, np.ndarray]]) -> None:
        fps = np.concatenate([v[0] for v in vertices])
        tps = np.concatenate([v[1] for v in vertices])
        fpr, tpr = fps / self.n_neg[0], tps / self.n_pos[0]
        precision = tps / (tps + fps)
        if not self.roc:  # the curves start at the origin (PR at the first precision)
            fpr, tpr = np.append(0.0, fpr), np.append(0.0, tpr)
            recall, precision = tpr, np.append(precision[0], precision)
        else:
            recall = tpr
        self.roc.append(np.stack([fpr, tpr])[:, thin_curve(fpr, tpr)])
        self.pr.append(np.stack([recall, precision])[:, thin_curve(recall, precision)])

    def _order_statistics(self, score: np.ndarray, y: np.ndarray) -> None:
        for k, rows in enumerate((score[y == 1], score[y == 0])):
            # Rows arrive from the highest score: descending rank r is ascending n - 1 - r.
            n, _, ranks = self.wanted[k]
            for ascending in ranks:
                descending = n - 1 - ascending - self.seen[k]
                if 0 <= descending < len(rows):
                    self.found[k][ascending] = float(rows[descending])
            self.seen[k] += len(rows)

    def quantiles(self) -> tuple[np.ndarray, np.ndarray]:
        """numpy's default ("linear") quantiles of each class's scores at the edge levels."""
        out = []
        for (n, virtual, _), found in zip(self.wanted, self.found, strict=True):
            if n == 0:
                out.append(np.empty(0))
                continue
            previous = np.minimum(np.floor(virtual), n - 1).astype(np.int64)
            following = np.minimum(previous + 1, n - 1)
            a = np.array([found[int(i)] for i in previous])
            b = np.array([found[int(i)] for i in following])
            out.append(_lerp(a, b, virtual - np.floor(virtual)))
        return out[0], out[1]

    def auc(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            defined = (self.n_pos > 0) & (self.n_neg > 0)
            return np.where(defined, self.twice_u / (2.0 * self.n_pos * self.n_neg), np.nan)

    def ap(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            defined = (self.n_pos > 0) & (self.n_neg > 0)
            return np.where(defined, self.ap_sum / self.n_pos, np.nan)

    def curve(self) -> dict[str, Any]:
        """Overall ROC and PR vertices, thinned as `report` thins all vertices at once."""
        if not self.roc:
            empty = np.empty(0)
            return {"fpr": empty, "tpr": empty, "recall": empty, "precision": empty}
        roc = np.concatenate(self.roc, axis=1)
        pr = np.concatenate(self.pr, axis=1)
        roc = roc[:, thin_curve(roc[0], roc[1])]
        pr = pr[:, thin_curve(pr[0], pr[1])]
        return {"fpr": roc[0], "tpr": roc[1], "recall": pr[0], "precision": pr[1]}


class _RowsBefore:
    """How many rows of a mask come before given positions: the mask as 64-bit words with a
    running count per word, so a look-up is one word's popcount (finding the mask's rows, as
    `np.flatnonzero` does, writes eight bytes per row and took 40% of the ranking)."""

    def __init__(self, mask: np.ndarray) -> None:
        n_words = len(mask) // 64 + 1  # one more word, for positions at the very end
        packed = np.zeros(8 * n_words, dtype=np.uint8)
        bytes_ = np.packbits(mask, bitorder="little")
        packed[: len(bytes_)] = bytes_
        self.words = packed.view("<u8")
        counts = np.bitwise_count(self.words)
        self.before_word = np.zeros(n_words, dtype=np.int64)
        np.cumsum(counts[:-1], out=self.before_word[1:])
        self.total = int(self.before_word[-1]) + int(counts[-1])

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        word = positions >> 6
        below = (np.uint64(1) << (positions & 63).astype(np.uint64)) - np.uint64(1)
        return self.before_word[word] + np.bitwise_count(self.words[word] & below)


def _quantile_ranks(n: int, levels: np.ndarray) -> tuple[int, np.ndarray, set[int]]:
    """(n, numpy's virtual indexes, the ascending ranks they read) for `np.quantile`."""
    virtual = (n - 1) * levels
    previous = np.minimum(np.floor(virtual), max(n - 1, 0)).astype(np.int64)
    ranks = set(previous.tolist()) | set(np.minimum(previous + 1, max(n - 1, 0)).tolist())
    return n, virtual, ranks if n else set()


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's quantile interpolation, operation for operation (so the result is bit-equal)."""
    diff = b - a
    out = a + diff * t
    np.subtract(b, diff * (1 - t), out=out, where=t >= 0.5)
    return out
