"""Admission of authenticated calls: decode only after authentication, bound what each silo
holds, time out stalled streams, and treat a caller that goes away as routine.

Installed innermost, after the silo interceptor, so nothing here runs for a caller that is
not an unrevoked silo of a hosted federation. gRPC hands requests over undecoded (the
handler's deserializer is replaced by the identity): a body that does not parse is then an
INVALID_ARGUMENT of an authenticated silo, logged once per `malformed_log_interval_s` per
silo, never a traceback, and a refused caller's body is never parsed at all.

Bounds (`CallerLimits`): calls admitted over all silos and per silo (RESOURCE_EXHAUSTED
beyond, with the reason); waiting calls per silo and in all (a long-poll beyond the bound is
answered at once, with its wait set to 0; a health Watch is refused); a deadline for a
stream's first message and each next one (the stalled call is cancelled). Refusals and
timeouts are counted in ``fedbiscuit_rpc_refusals_total`` by method and reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from prometheus_client import Counter

from aggregator.caller_limits import CallerLimits
from aggregator.ops.metrics import AggregatorMetrics
from aggregator.rpc.auth import SILO_METHODS, authenticated_federation, authenticated_silo
from aggregator.rpc.error_status import ClientCancelled, status_of
from aggregator.rpc.health import HEALTH_METHODS
from aggregator.rpc.method_handlers import rewrap
from aggregator.rpc.stream_watchdog import StreamWatchdog
from protos.errors import InvalidInput
from protos.retry_hint import BUSY

log = logging.getLogger(__name__)

# Calls that wait for something to happen: PullTask, SecAggFetch and GroupingFetch
# long-polls (their request's `wait_ms` can be set to 0) and health watches (which cannot be
# shortened).
LONG_POLLS = frozenset(
    {
        "/fedbiscuit.v1.Federation/PullTask",
        "/fedbiscuit.v1.Federation/SecAggFetch",
        "/fedbiscuit.v1.Federation/GroupingFetch",
    }
)
WATCHES = frozenset({"/grpc.health.v1.Health/Watch"})

_COUNTED = SILO_METHODS | HEALTH_METHODS  # other names are counted as "other"
Caller = tuple[str, str]  # (federation id, silo id)


class MalformedRequest(InvalidInput):
    """A request body that is not a valid message of its method."""


class _Slots:
    """Counts of admitted and waiting calls, per silo and in all; thread-safe."""

    def __init__(self, limits: CallerLimits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._admitted: Tally[Caller] = Tally()
        self._waiting: Tally[Caller] = Tally()
        self._admitted_total = 0
        self._waiting_total = 0

    def admit(self, caller: Caller) -> str | None:
        """Take a call slot for `caller`; returns the refusal reason if none is free."""
        with self._lock:
            if self._admitted[caller] >= self._limits.max_concurrent_rpcs_per_silo:
                return "silo_busy"
            if self._admitted_total >= self._limits.max_concurrent_rpcs:
                return "server_busy"
            self._admitted[caller] += 1
            self._admitted_total += 1
            return None

    def wait(self, caller: Caller) -> bool:
        """Take a waiting slot for `caller` if one is free."""
        with self._lock:
            if (
                self._waiting[caller] >= self._limits.max_waiting_per_silo
                or self._waiting_total >= self._limits.max_waiting
            ):
                return False
            self._waiting[caller] += 1
            self._waiting_total += 1
            return True

    def held(self, caller: Caller) -> int:
        with self._lock:
            return self._admitted[caller]

    def release(self, caller: Caller, waited: bool) -> None:
        with self._lock:
            self._admitted[caller] -= 1
            self._admitted_total -= 1
            if not self._admitted[caller]:
                del self._admitted[caller]
            if waited:
                self._waiting[caller] -= 1
                self._waiting_total -= 1
                if not self._waiting[caller]:
                    del self._waiting[caller]


class _MalformedLog:
    """One log line per silo per interval about malformed requests; the rest are summed."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[Caller, float] = {}
        self._suppressed: Tally[Caller] = Tally()

    def note(self, caller: Caller, method: str, problem: str) -> None:
        now = self._clock()
        with self._lock:
            last = self._last.get(caller)
            if last is not None and now - last < self._interval_s:
                self._suppressed[caller] += 1
                return
            self._last[caller] = now
            suppressed = self._suppressed.pop(caller, 0)
        log.warning(
            "federation=%s silo=%s sent a malformed %s request (%s); %d more since the last "
            "such line",
            caller[0],
            caller[1],
            method.rsplit("/", 1)[-1],
            problem,
            suppressed,
        )


class AdmissionInterceptor(grpc.ServerInterceptor):
    """Bounds, lazy decoding and stream deadlines for every method the server serves."""

    def __init__(
        self,
        limits: CallerLimits,
        metrics: AggregatorMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._slots = _Slots(limits)
        self._malformed = _MalformedLog(limits.malformed_log_interval_s, clock)
        self._watchdog = StreamWatchdog(clock)
        self.refusals = Counter(
            "fedbiscuit_rpc_refusals",
            "Calls refused or cut short, by method and reason: by the admission limits "
            "(silo_busy, server_busy, waiting_full, malformed, header_timeout, chunk_timeout, "
            "long_poll_shortened) and by the silo interceptor (no_certificate, "
            "invalid_certificate, revoked, revocation_unknown).",
            ["method", "reason"],
            registry=metrics.registry,
        )

    def close(self) -> None:
        self._watchdog.close()

    def count_refusal(self, method: str, reason: str) -> None:
        """Count a refusal made elsewhere (the silo interceptor's UNAUTHENTICATED ones)."""
        self.refusals.labels(method if method in _COUNTED else "other", reason).inc()

    def in_flight(self, federation_id: str, silo_id: str) -> int:
        """Calls of this silo admitted and not yet finished (for operators and tests)."""
        return self._slots.held((federation_id, silo_id))

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        decode = handler.request_deserializer or (lambda data: data)
        return rewrap(
            handler,
            lambda behavior, response_streams: self._admitted(
                method, behavior, decode, handler.request_streaming, response_streams
            ),
            request_deserializer=_undecoded,
        )

    def _admitted(
        self,
        method: str,
        behavior: Callable[..., Any],
        decode: Callable[[bytes], Any],
        request_streams: bool,
        response_streams: bool,
    ) -> Callable[..., Any]:
        def enter(raw: Any, context: grpc.ServicerContext) -> tuple[Caller, bool, Any]:
            """Admit the call and decode its request (or wrap its stream); aborts if refused."""
            caller = (authenticated_federation(context), authenticated_silo(context))
            reason = self._slots.admit(caller)
            if reason is not None:
                self._refuse(context, method, reason, caller)
            waited = False
            try:
                if method in WATCHES or method in LONG_POLLS:
                    waited = self._slots.wait(caller)
                    if not waited and method in WATCHES:
                        self._refuse(context, method, "waiting_full", caller)
                if request_streams:
                    return caller, waited, _Requests(raw, decode, context, caller, method, self)
                request = self._decode(raw, decode, context, caller, method)
                if method in LONG_POLLS and not waited and request.wait_ms:
                    request.wait_ms = 0  # answer now rather than hold one more worker
                    self.refusals.labels(method, "long_poll_shortened").inc()
                return caller, waited, request
            except BaseException:
                self._slots.release(caller, waited)
                raise

        @contextmanager
        def admitted(raw: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            """The admitted call's request; notes a call that ends early, frees its slots."""
            caller, waited, request = enter(raw, context)
            try:
                yield request
            except (ClientCancelled, MalformedRequest) as exc:  # raised before the servicer
                self._note_ended_early(request, method, caller)
                context.abort(*status_of(exc))
            except Exception:
                self._note_ended_early(request, method, caller)
                raise
            finally:
                self._slots.release(caller, waited)

        def unary(raw: Any, context: grpc.ServicerContext) -> Any:
            with admitted(raw, context) as request:
                return behavior(request, context)

        def streaming(raw: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with admitted(raw, context) as request:
                yield from behavior(request, context)

        return streaming if response_streams else unary

    def _refuse(
        self, context: grpc.ServicerContext, method: str, reason: str, caller: Caller
    ) -> None:
        self.refusals.labels(method, reason).inc()
        context.set_trailing_metadata((BUSY,))  # momentary: the silo client retries it
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _REASONS[reason].format(silo=caller[1]))

    def _decode(
        self,
        raw: bytes,
        decode: Callable[[bytes], Any],
        context: grpc.ServicerContext | None,
        caller: Caller,
        method: str,
    ) -> Any:
        """The decoded request; a body that does not parse is counted, logged (rate-limited)
        and answered INVALID_ARGUMENT (an abort, or MalformedRequest inside a stream)."""
        try:
            return decode(raw)
        except Exception as exc:  # DecodeError, RecursionError, bad UTF-8: all "malformed"
            problem = f"{type(exc).__name__}: {str(exc)[:120]}"
        self.refusals.labels(method, "malformed").inc()
        self._malformed.note(caller, method, problem)
        message = f"the request is not a valid {method.rsplit('/', 1)[-1]} message"
        if context is None:
            raise MalformedRequest(message)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)

    def _note_ended_early(self, request: Any, method: str, caller: Caller) -> None:
        """An INFO line for a stream its caller cancelled or let stall (the servicer turned
        the ClientCancelled into a CANCELLED status without logging it)."""
        if isinstance(request, _Requests) and request.ended_early is not None:
            log.info(
                "federation=%s silo=%s %s ended early: %s",
                caller[0],
                caller[1],
                method.rsplit("/", 1)[-1],
                request.ended_early,
            )


_REASONS = {
    "silo_busy": "silo {silo!r} already has the most calls in flight it may hold; retry later",
    "server_busy": "the aggregator is at its limit of calls in flight; retry later",
    "waiting_full": "silo {silo!r} already holds the most waiting calls it may; retry later",
}


def _undecoded(data: bytes) -> bytes:
    """gRPC's deserializer: keep the bytes; they are decoded once the caller is known."""
    return data


class _Requests:
    """A request stream decoded message by message, with a deadline for each message; a
    caller that cancels, disconnects or stalls ends it with ClientCancelled."""

    def __init__(
        self,
        raw: Iterator[bytes],
        decode: Callable[[bytes], Any],
        context: grpc.ServicerContext,
        caller: Caller,
        method: str,
        admission: AdmissionInterceptor,
    ) -> None:
        self._raw, self._decode, self._context = raw, decode, context
        self._caller, self._method, self._admission = caller, method, admission
        self._received = 0
        self._stalled: str | None = None
        self.ended_early: str | None = None
        """Why the caller's stream ended before its end (cancelled, stalled), if it did."""

    def __iter__(self) -> _Requests:
        return self

    def __next__(self) -> Any:
        limits = self._admission._limits
        first = self._received == 0
        seconds = limits.stream_header_timeout_s if first else limits.stream_chunk_timeout_s
        reason = "header_timeout" if first else "chunk_timeout"
        token = self._admission._watchdog.arm(seconds, lambda: self._stall(reason, seconds))
        try:
            raw = next(self._raw)
        except StopIteration:
            if self._stalled is None:
                raise
            self.ended_early = self._stalled
            raise ClientCancelled(self.ended_early) from None
        except grpc.RpcError:  # gRPC's iterator raises this only once the call is cancelled
            self.ended_early = (
                self._stalled or f"the caller cancelled after {self._received} message(s)"
            )
            raise ClientCancelled(self.ended_early) from None
        finally:
            self._admission._watchdog.disarm(token)
        self._received += 1
        return self._admission._decode(raw, self._decode, None, self._caller, self._method)

    def _stall(self, reason: str, seconds: float) -> None:
        self._stalled = f"no message for {seconds:g} s after {self._received}; call cancelled"
        self._admission.refusals.labels(self._method, reason).inc()
        self._context.cancel()
