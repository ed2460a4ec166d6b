"""Joining a federation: the plan a silo accepts from the aggregator's Join reply.

Why apart from the task loop: `fedbiscuit silo run` and `fedbiscuit silo export` both join,
and both must refuse the same things before they act on a plan: a reply for another silo
or federation, or plan bytes that do not match their hash or are not canonical.
"""

from __future__ import annotations

import hashlib

from pydantic import ValidationError

from protos.errors import InvalidInput
from protos.plan import Plan
from protos.v1 import federation_pb2 as pb
from silo.config import SiloConfig


def accept_plan(config: SiloConfig, reply: pb.JoinReply) -> Plan:
    """The plan of `reply`, checked against this silo's config and the plan's own hash."""
    if reply.silo_id != config.silo_id:
        raise InvalidInput(
            f"silo_id is {config.silo_id!r} but the aggregator reads {reply.silo_id!r} from "
            "this silo's certificate (pki.cert)"
        )
    if hashlib.sha256(reply.plan_json).hexdigest() != reply.plan_sha256:
        raise InvalidInput("the plan sent by the aggregator does not match its plan_sha256")
    try:
        plan = Plan.from_canonical_json(reply.plan_json)
    except ValidationError as exc:
        raise InvalidInput(f"the aggregator's plan is invalid: {exc}") from None
    if plan.sha256() != reply.plan_sha256:
        raise InvalidInput("the aggregator's plan is not in canonical form")
    if plan.federation_id != config.federation_id:
        raise InvalidInput(
            f"federation_id is {config.federation_id!r} but the aggregator's plan is for "
            f"{plan.federation_id!r}"
        )
    return plan
