"""numpy 1.23's ``argsort`` (default kind), written out, for scorers whose verdicts depend on the order of
equal scores.

GenEval's official scorer orders detections by ``np.argsort(scores)[::-1]`` under the numpy its
environment pins (1.23). That argsort is an introsort: median-of-three quicksort on spans of more than
16 elements, insertion sort below, heapsort past a depth limit of 2 floor(log2 n). It is not stable, so
equal scores come out in an order fixed by the algorithm. numpy >= 1.25 dispatches the same call to SIMD
kernels that order ties differently, and differently per CPU, so calling ``np.argsort`` here would not
reproduce the official verdicts. NaN sorts last, as in numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SMALL_SPAN = 16  # spans of at most this many elements are insertion-sorted


def _less(a: float, b: float) -> bool:
    """numpy's float order: NaN after every number."""
    return a < b or (b != b and a == a)


def _heapsort(values: Sequence[float], idx: list[int], lo: int, hi: int) -> None:
    """Heapsort of ``idx[lo..hi]`` by ``values`` (numpy's: a 1-based max-heap, sift-down from n // 2)."""
    n = hi - lo + 1

    def sift(start: int, size: int) -> None:
        item = idx[lo + start - 1]
        i, j = start, 2 * start
        while j <= size:
            if j < size and _less(values[idx[lo + j - 1]], values[idx[lo + j]]):
                j += 1
            if not _less(values[item], values[idx[lo + j - 1]]):
                break
            idx[lo + i - 1] = idx[lo + j - 1]
            i, j = j, 2 * j
        idx[lo + i - 1] = item

    for start in range(n // 2, 0, -1):
        sift(start, n)
    for size in range(n, 1, -1):
        idx[lo], idx[lo + size - 1] = idx[lo + size - 1], idx[lo]
        sift(1, size - 1)


def _swap(idx: list[int], i: int, j: int) -> None:
    idx[i], idx[j] = idx[j], idx[i]


def argsort(scores: Sequence[float] | np.ndarray) -> list[int]:
    """Ascending order of ``scores`` compared as float32, as numpy 1.23's ``np.argsort`` gives it."""
    values = np.asarray(scores, dtype=np.float32).tolist()  # float32 values, compared exactly
    idx = list(range(len(values)))
    if len(idx) < 2:
        return idx
    stack: list[tuple[int, int, int]] = []
    lo, hi, depth = 0, len(idx) - 1, 2 * (len(idx).bit_length() - 1)
    while True:
        if depth < 0:
            _heapsort(values, idx, lo, hi)
        else:
            while hi - lo > SMALL_SPAN - 1:
                mid = lo + ((hi - lo) >> 1)
                if _less(values[idx[mid]], values[idx[lo]]):
                    _swap(idx, mid, lo)
                if _less(values[idx[hi]], values[idx[mid]]):
                    _swap(idx, hi, mid)
                if _less(values[idx[mid]], values[idx[lo]]):
                    _swap(idx, mid, lo)
                pivot = values[idx[mid]]
                i, j = lo, hi - 1
                _swap(idx, mid, j)
                while True:
                    i += 1
                    while _less(values[idx[i]], pivot):
                        i += 1
                    j -= 1
                    while _less(pivot, values[idx[j]]):
                        j -= 1
                    if i >= j:
                        break
                    _swap(idx, i, j)
                _swap(idx, i, hi - 1)
                depth -= 1
                if i - lo < hi - i:  # the larger part waits on the stack
                    stack.append((i + 1, hi, depth))
                    hi = i - 1
                else:
                    stack.append((lo, i - 1, depth))
                    lo = i + 1
            for k in range(lo + 1, hi + 1):
                item, j = idx[k], k
                while j > lo and _less(values[item], values[idx[j - 1]]):
                    idx[j] = idx[j - 1]
                    j -= 1
                idx[j] = item
        if not stack:
            return idx
        lo, hi, depth = stack.pop()
