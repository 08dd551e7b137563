"""Reading ahead and writing behind on a worker thread keep the items in order, keep memory
bounded, and let an error through as itself: scoring and the paired reads rely on all three.
"""

from __future__ import annotations

import threading

import pytest

from eval_assets.core.pipeline.threads import read_ahead, written_behind


def test_batches_are_read_ahead_on_another_thread_in_order_and_errors_come_through():
    """The metric steps read the next batch while they count the current one: the items come in
    order from a worker thread, an error in the source reaches the caller as itself, and a
    caller that stops early leaves no worker running and the source closed."""
    threads: list[str] = []
    closed: list[bool] = []

    def source(n: int, fail_at: int | None = None):
        try:
            for k in range(n):
                threads.append(threading.current_thread().name)
                if k == fail_at:
                    raise ValueError(f"bad batch {k}")
                yield k
        finally:
            closed.append(True)

    assert list(read_ahead(source(5))) == [0, 1, 2, 3, 4]
    assert threads and all(name.startswith("read-ahead") for name in threads)
    assert threading.current_thread().name not in threads

    got = []
    with pytest.raises(ValueError, match="bad batch 2"):
        for item in read_ahead(source(5, fail_at=2)):
            got.append(item)
    assert got == [0, 1]

    closed.clear()
    reader = read_ahead(source(1_000))
    assert next(reader) == 0
    reader.close()
    assert closed == [True]
    assert not any(t.name.startswith("read-ahead") for t in threading.enumerate())


def test_writes_happen_behind_on_another_thread_in_order_and_errors_come_through():
    """The predictions step writes each batch while it predicts the next: a hand-over returns
    before its write is done, writes run on a worker thread in order, leaving waits for the last
    one, and a write's error reaches the caller as itself (at the next hand-over, or on leaving
    when the last write fails), with no thread left behind."""
    written: list[int] = []
    threads: list[str] = []
    release = threading.Event()

    def write(item: int) -> None:
        if item == 0:
            assert release.wait(timeout=30), "the caller never went on"
        threads.append(threading.current_thread().name)
        if item < 0:
            raise ValueError(f"disk full at {item}")
        written.append(item)

    with written_behind(write) as hand_over:
        hand_over(0)
        release.set()  # reached while the first write still waits: the hand-over returned
        for item in (1, 2, 3):
            hand_over(item)
    assert written == [0, 1, 2, 3]
    assert threads and all(name.startswith("write-behind") for name in threads)

    written.clear()
    with pytest.raises(ValueError, match="disk full at -1"):
        with written_behind(write) as hand_over:
            for item in (1, -1, 2, 3):
                hand_over(item)
    assert written == [1]

    written.clear()
    with pytest.raises(ValueError, match="disk full at -5"):
        with written_behind(write) as hand_over:
            hand_over(4)
            hand_over(-5)
    assert written == [4]
    assert not any(t.name.startswith("write-behind") for t in threading.enumerate())
