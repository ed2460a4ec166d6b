"""A seeded, structured fuzzer of every Federation request type, for a silo in a live round.

Starting from valid requests (`seeds`: method name -> the messages of one call, several for a
stream), each case mutates one call: fields set to boundary or random values through the
message descriptors (recursively), strings with invalid UTF-8, unknown groups nested past
the parser's limit, truncation, bit flips, random bytes, and for streams reordered,
duplicated or dropped parts. Cases are sent as raw bytes over a real channel. What must hold
(issue 14): no INTERNAL or UNKNOWN status and no traceback on the server, whatever arrives.
Used by tests/aggregator/test_fuzz.py (short form) and benchmarks/hostile_peers.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import grpc
import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from protos.v1 import federation_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["Federation"]
STRING_VALUES = ("", "x" * 70_000, "é\u0000\u202e", "../../etc/passwd", "r0.a0.silo-1", "fed-test")
INT_VALUES = (0, 1, -1, 2**31 - 1, -(2**31), 2**32 - 1, 2**63 - 1)
FLOAT_VALUES = (0.0, -1.0, 1e308, float("nan"), float("inf"), -float("inf"), 5e-324)
_UNSIGNED = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED32,
             FieldDescriptor.TYPE_FIXED64}  # fmt: skip
_FLOATS = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}


@dataclass(frozen=True)
class Case:
    method: str  # the method's name, e.g. "UploadUpdate"
    kind: str  # which mutation made it
    payloads: tuple[bytes, ...]  # one message, or a stream's messages


def cases(seeds: Mapping[str, Sequence[Message]], count: int, seed: int) -> Iterator[Case]:
    """`count` mutated calls, the same ones for the same `seed`."""
    rng = np.random.default_rng(seed)
    methods = sorted(seeds)
    for _ in range(count):
        method = methods[int(rng.integers(len(methods)))]
        yield _mutate(method, list(seeds[method]), rng)


def send(channel: grpc.Channel, case: Case, timeout_s: float) -> grpc.StatusCode:
    """Send `case` as raw bytes; the status code it ends with (OK included)."""
    descriptor = SERVICE.methods_by_name[case.method]
    path = f"/{SERVICE.full_name}/{case.method}"
    try:
        if descriptor.client_streaming:
            channel.stream_unary(path)(iter(case.payloads), timeout=timeout_s)
        elif descriptor.server_streaming:
            for _ in channel.unary_stream(path)(case.payloads[0], timeout=timeout_s):
                pass
        else:
            channel.unary_unary(path)(case.payloads[0], timeout=timeout_s)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def run(
    channel: grpc.Channel, seeds: Mapping[str, Sequence[Message]], count: int, seed: int
) -> Counter[tuple[str, str]]:
    """Send `count` cases; tally of (method, status code name)."""
    tally: Counter[tuple[str, str]] = Counter()
    for case in cases(seeds, count, seed):
        tally[(case.method, send(channel, case, timeout_s=10).name)] += 1
    return tally


def _mutate(method: str, messages: list[Message], rng: np.random.Generator) -> Case:
    kinds = ["fields", "fields", "fields", "bad_utf8", "deep_nesting", "truncate", "bitflip",
             "random"]  # fmt: skip
    if len(messages) > 1:
        kinds += ["reorder", "duplicate", "drop"]
    kind = kinds[int(rng.integers(len(kinds)))]
    payloads = [m.SerializeToString() for m in messages]
    target = int(rng.integers(len(payloads)))
    if kind == "fields":
        copy = type(messages[target])()
        copy.CopyFrom(messages[target])
        for _ in range(int(rng.integers(1, 4))):
            _mutate_fields(copy, rng, depth=0)
        payloads[target] = copy.SerializeToString()
    elif kind == "bad_utf8":
        payloads[target] += _bad_utf8(messages[target], rng)
    elif kind == "deep_nesting":
        tag = _varint((1000 + int(rng.integers(100))) << 3 | 3)  # an unknown group
        depth = int(rng.integers(150, 400))
        payloads[target] += tag * depth + _varint((1000 << 3) | 4) * depth
    elif kind == "truncate" and payloads[target]:
        payloads[target] = payloads[target][: int(rng.integers(len(payloads[target])))]
    elif kind == "bitflip" and payloads[target]:
        data = bytearray(payloads[target])
        for _ in range(int(rng.integers(1, 8))):
            data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        payloads[target] = bytes(data)
    elif kind == "random":
        payloads[target] = rng.bytes(int(rng.integers(0, 512)))
    elif kind == "reorder":
        payloads = [payloads[i] for i in rng.permutation(len(payloads))]
    elif kind == "duplicate":
        payloads.insert(target, payloads[target])
    elif kind == "drop":
        del payloads[target]
    return Case(method, kind, tuple(payloads))


def _mutate_fields(message: Message, rng: np.random.Generator, depth: int) -> None:
    """Set one random field of `message` (or of a message inside it) to a hostile value."""
    fields = message.DESCRIPTOR.fields
    field = fields[int(rng.integers(len(fields)))]
    if field.is_repeated and not _is_map(field):
        container = getattr(message, field.name)
        if rng.random() < 0.3:
            del container[:]
            return
        for _ in range(int(rng.integers(1, 50))):
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                _mutate_fields(container.add(), rng, depth + 1)
            else:
                container.append(_value(field, rng))
        return
    if _is_map(field):
        container = getattr(message, field.name)
        value_field = field.message_type.fields_by_name["value"]
        for _ in range(int(rng.integers(1, 20))):
            key = STRING_VALUES[int(rng.integers(len(STRING_VALUES)))][:64]
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                _mutate_fields(container[key], rng, depth + 1)
            else:
                container[key] = _value(value_field, rng)
        return
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if depth < 4 and rng.random() < 0.8:
            _mutate_fields(getattr(message, field.name), rng, depth + 1)
        else:
            message.ClearField(field.name)
        return
    setattr(message, field.name, _value(field, rng))


def _value(field: FieldDescriptor, rng: np.random.Generator) -> object:
    if field.type == FieldDescriptor.TYPE_STRING:
        return STRING_VALUES[int(rng.integers(len(STRING_VALUES)))]
    if field.type == FieldDescriptor.TYPE_BYTES:
        return rng.bytes(int(rng.choice([0, 1, 32, 65, 4096])))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return bool(rng.integers(2))
    if field.type in _FLOATS:
        return FLOAT_VALUES[int(rng.integers(len(FLOAT_VALUES)))]
    if field.type == FieldDescriptor.TYPE_ENUM:
        return int(rng.integers(-1, 10))
    value = INT_VALUES[int(rng.integers(len(INT_VALUES)))]
    if field.type in _UNSIGNED:
        bits = (
            32 if field.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32) else 64
        )
        return value % (1 << bits)
    if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32,
                      FieldDescriptor.TYPE_SFIXED32):  # fmt: skip
        return max(-(2**31), min(2**31 - 1, value))
    return value


def _bad_utf8(message: Message, rng: np.random.Generator) -> bytes:
    """One more occurrence of a string field of `message` holding invalid UTF-8."""
    strings = [f for f in message.DESCRIPTOR.fields if f.type == FieldDescriptor.TYPE_STRING]
    number = strings[int(rng.integers(len(strings)))].number if strings else 1
    junk = rng.bytes(4) + b"\xff\xfe\xc0\x80"
    return _varint(number << 3 | 2) + _varint(len(junk)) + junk


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def seeds_for(
    task: pb.Task,
    header: pb.UpdateHeader,
    data: bytes,
    entry_line: bytes,
    advertisement: pb.SecAggKeyAdvertisement | None = None,
) -> dict:
    """Valid requests of every method for the silo holding TRAIN `task` (`header` and `data`
    a valid upload of it, `entry_line` a signed ledger entry of that silo, `advertisement`
    its signed SecAgg+ keys under a masking plan)."""
    fed, plan = task.federation_id, task.plan_sha256
    advertisement = advertisement or pb.SecAggKeyAdvertisement(
        silo_id="silo-1",
        mask_public_key=b"m" * 32,
        share_public_key=b"k" * 32,
        certificate_pem=b"-----BEGIN CERTIFICATE-----",
        signature=b"sig",
    )
    context = (
        task.secagg
        if task.HasField("secagg")
        else pb.SecAggContext(federation_id=fed, round=task.round, plan_sha256=plan, seed=b"s" * 32)
    )
    return {
        "Join": [pb.JoinRequest(federation_id=fed, agent_version="fuzz")],
        "PullTask": [pb.PullTaskRequest(federation_id=fed, plan_sha256=plan, wait_ms=0)],
        "DownloadGlobals": [pb.DownloadRequest(federation_id=fed, task_id=task.task_id)],
        "UploadUpdate": [pb.UploadPart(header=header), pb.UploadPart(data=data)],
        "ReportLosses": [
            pb.LossReport(
                federation_id=fed,
                task_id=task.task_id,
                round=task.round,
                plan_sha256=plan,
                losses=[0.5, 0.25],
                ledger_entries=[entry_line],
            ),  # fmt: skip
            pb.LossReport(
                federation_id=fed,
                task_id=task.task_id,
                round=task.round,
                plan_sha256=plan,
                sealed={"silo-2": b"blob", "silo-3": b"blob"},
                ledger_entries=[entry_line],
            ),  # fmt: skip
        ],
        "Decline": [
            pb.DeclineRequest(
                federation_id=fed,
                task_id=task.task_id,
                round=task.round,
                reason_code="fuzz",
                message="fuzz",
                epsilon_spent=0.5,
                ledger_entries=[entry_line],
            )  # fmt: skip
        ],
        "SecAggSubmit": [
            pb.SecAggSubmission(
                federation_id=fed,
                task_id=task.task_id,
                context=context,
                advertisement=advertisement,
            )  # fmt: skip
        ],
        "SecAggFetch": [
            pb.SecAggFetchRequest(
                federation_id=fed, task_id=task.task_id, stage=pb.SEC_AGG_STAGE_ROSTER, wait_ms=0
            )
        ],
        "HeKeys": [pb.HeKeysRequest(federation_id=fed, key_epoch=0)],
        "HeProvideKeys": [
            pb.HeKeyUpload(federation_id=fed, public_context=b"ctx", sealed_contexts={"x": b"y"})
        ],
        "HeSpotCheck": [pb.HeSpotCheckRequest(federation_id=fed)],
        "GroupingFetch": [
            pb.GroupingFetchRequest(
                federation_id=fed,
                task_id=task.task_id,
                attempt=task.grouping.attempt,
                stage=pb.GROUPING_STAGE_INBOX,
                wait_ms=0,
            )  # fmt: skip
        ],
        "GroupingConfirm": [
            pb.GroupingConfirmation(
                federation_id=fed,
                task_id=task.task_id,
                attempt=task.grouping.attempt,
                digest=b"d" * 32,
                signature=b"sig",
            )  # fmt: skip
        ],
    }
