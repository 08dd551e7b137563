"""Overlapping one stage's work with the next on a worker thread, in order and one item ahead.

Parquet decoding, numpy and the bootstrap's draws release the GIL, so reading the next batch (or
writing the last one) beside the work on this one roughly halves a stage's time, while memory
still holds a bounded number of items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
_END = object()


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items`, each produced on a worker thread while the caller holds the one before (one
    item ahead: memory holds at most three). An error in `items` reaches the caller as itself;
    a caller that stops early waits for the item in progress, and no thread is left."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as worker:
        pending = worker.submit(next, items, _END)
        while (item := pending.result()) is not _END:
            pending = worker.submit(next, items, _END)
            yield item


@contextmanager
def written_behind(write: Callable[[T], object]) -> Iterator[Callable[[T], None]]:
    """A function that hands each item to `write` on a worker thread and returns at once, so the
    caller makes the next item meanwhile. Items are written in order, one at a time (a call waits
    for the write before it, so memory holds two items at most); a write's error reaches the
    caller as itself, at the next call or on leaving, which waits for the last write."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-behind") as worker:
        pending: Future[object] | None = None

        def hand_over(item: T) -> None:
            nonlocal pending
            if pending is not None:
                pending.result()
            pending = worker.submit(write, item)

        yield hand_over
        if pending is not None:
            pending.result()
