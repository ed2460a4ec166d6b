"""JSON log lines: our key=value fields become top-level fields a pipeline can filter on."""

from __future__ import annotations

import json
import logging

from protos.operator_formats.log_format import JsonFormatter


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord(
        "aggregator.rounds.round_machine", logging.INFO, __file__, 1, message, args, None
    )
    made.__dict__.update(extra)
    return made


def test_key_value_fields_of_the_message_become_json_fields() -> None:
    line = JsonFormatter().format(
        record("federation=%s round=%d attempt=%d round started silos=%s", "demo", 3, 0, "a,b")
    )

    doc = json.loads(line)
    assert doc["message"] == "federation=demo round=3 attempt=0 round started silos=a,b"
    assert (doc["federation"], doc["round"], doc["attempt"], doc["silos"]) == ("demo", 3, 0, "a,b")
    assert (doc["level"], doc["logger"]) == ("INFO", "aggregator.rounds.round_machine")


def test_extra_fields_are_kept_and_cannot_overwrite_the_envelope() -> None:
    line = JsonFormatter().format(record("rejected level=forged message=x", silo="silo-1"))

    doc = json.loads(line)
    assert doc["silo"] == "silo-1"
    assert doc["level"] == "INFO" and doc["message"] == "rejected level=forged message=x"
