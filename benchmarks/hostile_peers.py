"""Hostile peers against a live aggregator process, with an honest silo beside them (issue 14).

A throw-away PKI and plaintext plan; the aggregator runs as its own process (`fedbiscuit
aggregator run`), so its RSS is its own. Silos are real mTLS gRPC clients on loopback:
"silo-1" is honest, "silo-2" a valid but hostile silo, "silo-rev" a revoked one. Each
scenario runs while silo-1 times Joins (the latency column is the slowest of them); then the
hostile calls are released and their final status codes tallied. Scenarios:

- 96 UploadUpdate streams that never send a header (silo-2);
- 96 grpc.health.v1 Watch streams with the revoked certificate;
- 96 PullTask long-polls (silo-2, wait 60 s; the federation is waiting for a third silo);
- malformed protobufs (random bytes, nesting past 200 levels, bad UTF-8, truncations, bit
  flips) on every method from silo-2 and from the revoked certificate;
- 400 idle TCP connections to the gRPC port;
- 3000 Joins from 16 threads (silo-2).

Then silo-3 joins, the round goes live, the structured fuzzer (tests/request_fuzzer.py)
sends `--fuzz` cases as silo-2 with its live TRAIN task, and all three silos upload: the
federation must finish DONE. Tracebacks are counted in the aggregator's log.

Run from the repository root: `PYTHONPATH=. python benchmarks/hostile_peers.py [--fuzz 3000]`.
Prints the table (scenario, honest Join latency, refusals by status, aggregator RSS).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from privacy.pki import channel_credentials, init_ca, issue_aggregator, issue_silo, revoke
from protos import codec
from protos.operator_formats.config_files import save_model_file
from protos.plan import BackboneSpec, Plan, SelectorSpec
from protos.v1 import federation_pb2 as pb
from protos.v1 import federation_pb2_grpc as pb_grpc
from tests.aggregator.conftest import Silo
from tests.ledger_entries import signer_for
from tests.request_fuzzer import cases, run, seeds_for, send

FEDERATION = "hostile"
HOLD_S = 12.0  # past the default 10 s stream header deadline
JOIN_PROBES = 5
MALFORMED = ("random", "deep_nesting", "bad_utf8", "truncate", "bitflip")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=3000, help="fuzzed calls in a live round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        Bench(Path(tmp)).run(args.fuzz)


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pki = init_ca(root / "pki", FEDERATION)
        issue_aggregator(self.pki.root)
        for silo_id in ("silo-1", "silo-2", "silo-3", "silo-rev"):
            issue_silo(self.pki.root, silo_id)
        revoke(self.pki.root, "silo-rev")
        self.plan = Plan(
            federation_id=FEDERATION,
            rounds=1,
            silos_per_round=3,
            min_silos=3,
            round_deadline_s=600.0,
            protection="insecure_plaintext",
            selector=SelectorSpec(backbone=BackboneSpec(kind="tiny")),
        )
        self.port = _free_port()
        self.log = root / "aggregator.log"
        self.rows: list[tuple[str, float, Counter[str], float]] = []

    def run(self, fuzz: int) -> None:
        process = self._start_aggregator()
        try:
            honest = self._silo("silo-1")
            honest.join()
            attacker = self._silo("silo-2")
            attacker.join()
            print(f"aggregator pid {process.pid}, load {os.getloadavg()[0]:.2f}", flush=True)
            self._scenario("baseline (no attack)", process, honest, lambda: iter(()))
            self._scenario("96 header-less UploadUpdate", process, honest, self._headerless)
            self._scenario("96 revoked-cert health Watch", process, honest, self._revoked_watch)
            self._scenario("96 PullTask long-polls", process, honest, self._long_polls)
            self._scenario("malformed protobufs", process, honest, self._malformed)
            self._scenario("400 idle TCP connections", process, honest, self._idle_tcp)
            self._scenario("3000 Joins from 16 threads", process, honest, self._join_flood)
            fuzzed, finished = self._live_round(fuzz, honest, attacker, process)
        finally:
            process.terminate()
            process.wait(30)
        tracebacks = self.log.read_text().count("Traceback")
        _print_table(self.rows)
        by_code = Counter()
        for (_, code), n in fuzzed.items():
            by_code[code] += n
        methods = len({method for method, _ in fuzzed})
        print(f"\nfuzzer ({fuzz} cases over {methods} methods, live round): " + _codes(by_code))
        print(f"federation finished: {finished}; tracebacks in the aggregator log: {tracebacks}")
        print(f"load after: {os.getloadavg()[0]:.2f}")

    # -- the aggregator and its clients ---------------------------------------------------

    def _start_aggregator(self) -> subprocess.Popen:
        plan_path = self.root / "plan.yaml"
        save_model_file(plan_path, self.plan)
        config = {
            "listen_address": f"127.0.0.1:{self.port}",
            "pki": {
                "ca_cert": str(self.pki.ca_cert),
                "server_cert": str(self.pki.aggregator_cert),
                "server_key": str(self.pki.aggregator_key),
                "revocation_list": str(self.pki.revocation_list),
            },
            "state_dir": str(self.root / "state"),
            "plan_path": str(plan_path),
            "max_long_poll_s": 10.0,
            "finish_linger_s": 5.0,
        }
        config_path = self.root / "aggregator.yaml"
        config_path.write_text(yaml.safe_dump(config))
        process = subprocess.Popen(
            [sys.executable, "-m", "fedbiscuit", "aggregator", "run", "--config", str(config_path)],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if "listening" in self.log.read_text():
                return process
            if process.poll() is not None:
                raise SystemExit(f"aggregator exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        raise SystemExit("aggregator did not start within 120 s")

    def _channel(self, silo_id: str) -> grpc.Channel:
        credentials = channel_credentials(
            self.pki.ca_cert, self.pki.silo_cert(silo_id), self.pki.silo_key(silo_id)
        )
        return grpc.secure_channel(f"127.0.0.1:{self.port}", credentials)

    def _silo(self, silo_id: str) -> Silo:
        stub = pb_grpc.FederationStub(self._channel(silo_id))
        return Silo(silo_id, stub, self.plan, signer_for(self.pki, silo_id))

    # -- scenarios: each yields once its attack is in place, then tallies its outcome ----

    def _scenario(
        self,
        name: str,
        process: subprocess.Popen,
        honest: Silo,
        attack: Callable[[], Iterator[Counter[str]]],
    ) -> None:
        outcomes = attack()
        tally: Counter[str] = Counter()
        rss = _rss_mib(process.pid)
        try:
            tally.update(next(outcomes, Counter()))  # the attack is running now
            latencies = []
            for _ in range(JOIN_PROBES):
                started = time.perf_counter()
                try:
                    honest.join()
                except grpc.RpcError as error:
                    tally[f"honest {error.code().name}"] += 1
                latencies.append(time.perf_counter() - started)
                rss = max(rss, _rss_mib(process.pid))
        finally:
            for more in outcomes:
                tally.update(more)
        rss = max(rss, _rss_mib(process.pid))
        self.rows.append((name, max(latencies), tally, rss))
        print(f"  done: {name}", flush=True)

    def _headerless(self) -> Iterator[Counter[str]]:
        release = threading.Event()

        def stalled() -> Iterator[bytes]:
            release.wait(HOLD_S)
            return
            yield b""  # a generator that sends nothing

        channel = self._channel("silo-2")
        upload = channel.stream_unary("/fedbiscuit.v1.Federation/UploadUpdate")
        calls = [upload.future(stalled(), timeout=60) for _ in range(96)]
        time.sleep(1.0)
        yield Counter()
        time.sleep(max(0.0, HOLD_S - 1.0 - JOIN_PROBES * 0.1))
        release.set()
        yield Counter(_code_of(call) for call in calls)
        channel.close()

    def _revoked_watch(self) -> Iterator[Counter[str]]:
        channel = self._channel("silo-rev")
        health = health_pb2_grpc.HealthStub(channel)
        watches = [health.Watch(health_pb2.HealthCheckRequest(), timeout=60) for _ in range(96)]
        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(_first_status, watches))
        yield Counter(codes)
        for watch in watches:
            watch.cancel()
        channel.close()

    def _long_polls(self) -> Iterator[Counter[str]]:
        channel = self._channel("silo-2")
        pull = pb_grpc.FederationStub(channel).PullTask
        request = pb.PullTaskRequest(
            federation_id=FEDERATION, plan_sha256=self.plan.sha256(), wait_ms=60_000
        )
        calls = [pull.future(request, timeout=60) for _ in range(96)]
        time.sleep(1.0)
        yield Counter()
        yield Counter(_code_of(call) for call in calls)
        channel.close()

    def _malformed(self) -> Iterator[Counter[str]]:
        task = pb.Task(
            task_id="r0.a0.silo-2", federation_id=FEDERATION, plan_sha256=self.plan.sha256()
        )
        header = pb.UpdateHeader(federation_id=FEDERATION, task_id=task.task_id)
        seeds = seeds_for(task, header, b"\0" * 64, b"{}")
        malformed = [c for c in cases(seeds, 1500, seed=1) if c.kind in MALFORMED][:600]
        tally: Counter[str] = Counter()
        for silo_id in ("silo-2", "silo-rev"):
            with self._channel(silo_id) as channel, ThreadPoolExecutor(8) as pool:
                codes = pool.map(lambda case: send(channel, case, 10).name, malformed)
                tally.update(f"{silo_id} {code}" for code in codes)
        yield tally

    def _idle_tcp(self) -> Iterator[Counter[str]]:
        sockets = [socket.create_connection(("127.0.0.1", self.port)) for _ in range(400)]
        time.sleep(1.0)
        yield Counter({"connected": len(sockets)})
        for sock in sockets:
            sock.close()

    def _join_flood(self) -> Iterator[Counter[str]]:
        channel = self._channel("silo-2")
        stub = pb_grpc.FederationStub(channel)
        remaining = iter(range(3000))
        lock = threading.Lock()
        tally: Counter[str] = Counter()

        def worker() -> None:
            while True:
                with lock:
                    if next(remaining, None) is None:
                        return
                try:
                    stub.Join(pb.JoinRequest(federation_id=FEDERATION), timeout=30)
                    code = "OK"
                except grpc.RpcError as error:
                    code = error.code().name
                with lock:
                    tally[code] += 1

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        yield Counter()
        for thread in threads:
            thread.join()
        yield tally
        channel.close()

    # -- a live round: fuzz it, then finish the federation ---------------------------------

    def _live_round(
        self, fuzz: int, honest: Silo, attacker: Silo, process: subprocess.Popen
    ) -> tuple[Counter[tuple[str, str]], bool]:
        third = self._silo("silo-3")
        third.join()
        silos = [honest, attacker, third]
        tasks = {silo.silo_id: silo.pull() for silo in silos}
        task = tasks["silo-2"]
        globals_ = attacker.download(task)[1]
        header = attacker.header(task, np.zeros_like(globals_))
        attacker.entries.pop()  # the fuzzer's copy; the real upload signs its own
        data = next(codec.iter_chunks(codec.to_bytes(np.zeros_like(globals_))))
        seeds = seeds_for(task, header, data, header.ledger_entries[-1])
        with self._channel("silo-2") as channel:
            tally = run(channel, seeds, fuzz, seed=14)
        for silo in silos:
            task = silo.pull()
            if task.kind == pb.TASK_KIND_TRAIN:
                try:
                    silo.upload(task, np.zeros_like(silo.download(task)[1]))
                except grpc.RpcError as error:
                    print(f"  {silo.silo_id} upload: {error.code().name} {error.details()}")
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            return tally, False
        return tally, process.returncode == 0


def _print_table(rows: list[tuple[str, float, Counter[str], float]]) -> None:
    print(f"\n{'scenario':<32} {'honest Join':>12} {'aggregator RSS':>15}  refusals by status")
    for name, latency, tally, rss in rows:
        print(f"{name:<32} {latency * 1000:>9.0f} ms {rss:>11.0f} MiB  {_codes(tally)}")


def _codes(tally: Counter) -> str:
    return ", ".join(f"{key}: {n}" for key, n in sorted(tally.items(), key=str)) or "-"


def _code_of(call: grpc.Future) -> str:
    error = call.exception(timeout=120)
    return "OK" if error is None else error.code().name


def _first_status(watch: Iterator[health_pb2.HealthCheckResponse]) -> str:
    try:
        next(watch)
        return "OK (watching)"
    except grpc.RpcError as error:
        return error.code().name


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()
