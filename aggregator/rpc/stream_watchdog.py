"""One thread that fires a callback when a deadline passes, for many calls at once.

Why: a stream that stops sending blocks its worker thread inside gRPC's request iterator,
which no timeout reaches; the only way out is another thread cancelling the call. One
watchdog thread serves every stream (a timer thread per chunk would not).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class StreamWatchdog:
    """`arm(seconds, callback)` returns a token; `disarm(token)` before it fires cancels it.
    Callbacks run on the watchdog thread and must be quick (they cancel a call)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._tokens = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="stream-watchdog", daemon=True)
        self._thread.start()

    def arm(self, seconds: float, callback: Callable[[], None]) -> int:
        with self._lock:
            token = next(self._tokens)
            self._callbacks[token] = callback
            heapq.heappush(self._heap, (self._clock() + seconds, token))
            self._lock.notify()
            return token

    def disarm(self, token: int) -> None:
        with self._lock:
            self._callbacks.pop(token, None)  # its heap entry is skipped when it comes up

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed:
                    while self._heap and self._heap[0][1] not in self._callbacks:
                        heapq.heappop(self._heap)
                    if self._heap and self._heap[0][0] <= self._clock():
                        break
                    wait_s = self._heap[0][0] - self._clock() if self._heap else None
                    self._lock.wait(wait_s)
                if self._closed:
                    return
                _, token = heapq.heappop(self._heap)
                callback = self._callbacks.pop(token)
            callback()
