from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_KIND_UNSPECIFIED: _ClassVar[TaskKind]
    TASK_KIND_WAIT: _ClassVar[TaskKind]
    TASK_KIND_TRAIN: _ClassVar[TaskKind]
    TASK_KIND_DONE: _ClassVar[TaskKind]
    TASK_KIND_EVALUATE: _ClassVar[TaskKind]

class SecAggStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEC_AGG_STAGE_UNSPECIFIED: _ClassVar[SecAggStage]
    SEC_AGG_STAGE_ROSTER: _ClassVar[SecAggStage]
    SEC_AGG_STAGE_SHARES: _ClassVar[SecAggStage]
    SEC_AGG_STAGE_SURVIVORS: _ClassVar[SecAggStage]
    SEC_AGG_STAGE_UNMASK: _ClassVar[SecAggStage]

class GroupingStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GROUPING_STAGE_UNSPECIFIED: _ClassVar[GroupingStage]
    GROUPING_STAGE_INBOX: _ClassVar[GroupingStage]
    GROUPING_STAGE_CONFIRMATIONS: _ClassVar[GroupingStage]
TASK_KIND_UNSPECIFIED: TaskKind
TASK_KIND_WAIT: TaskKind
TASK_KIND_TRAIN: TaskKind
TASK_KIND_DONE: TaskKind
TASK_KIND_EVALUATE: TaskKind
SEC_AGG_STAGE_UNSPECIFIED: SecAggStage
SEC_AGG_STAGE_ROSTER: SecAggStage
SEC_AGG_STAGE_SHARES: SecAggStage
SEC_AGG_STAGE_SURVIVORS: SecAggStage
SEC_AGG_STAGE_UNMASK: SecAggStage
GROUPING_STAGE_UNSPECIFIED: GroupingStage
GROUPING_STAGE_INBOX: GroupingStage
GROUPING_STAGE_CONFIRMATIONS: GroupingStage

class JoinRequest(_message.Message):
    __slots__ = ("federation_id", "agent_version")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    agent_version: str
    def __init__(self, federation_id: _Optional[str] = ..., agent_version: _Optional[str] = ...) -> None: ...

class JoinReply(_message.Message):
    __slots__ = ("federation_id", "silo_id", "plan_json", "plan_sha256", "ledger_next_seq", "ledger_last_hash")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    SILO_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    PLAN_SHA256_FIELD_NUMBER: _ClassVar[int]
    LEDGER_NEXT_SEQ_FIELD_NUMBER: _ClassVar[int]
    LEDGER_LAST_HASH_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    silo_id: str
    plan_json: bytes
    plan_sha256: str
    ledger_next_seq: int
    ledger_last_hash: str
    def __init__(self, federation_id: _Optional[str] = ..., silo_id: _Optional[str] = ..., plan_json: _Optional[bytes] = ..., plan_sha256: _Optional[str] = ..., ledger_next_seq: _Optional[int] = ..., ledger_last_hash: _Optional[str] = ...) -> None: ...

class PullTaskRequest(_message.Message):
    __slots__ = ("federation_id", "plan_sha256", "wait_ms")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_SHA256_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    plan_sha256: str
    wait_ms: int
    def __init__(self, federation_id: _Optional[str] = ..., plan_sha256: _Optional[str] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("kind", "task_id", "federation_id", "round", "phase", "plan_sha256", "adapter_index", "globals_sha256", "local_steps", "deadline_unix_s", "retry_after_ms", "message", "adapter_sha256", "secagg", "he", "grouping")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PLAN_SHA256_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_INDEX_FIELD_NUMBER: _ClassVar[int]
    GLOBALS_SHA256_FIELD_NUMBER: _ClassVar[int]
    LOCAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_SHA256_FIELD_NUMBER: _ClassVar[int]
    SECAGG_FIELD_NUMBER: _ClassVar[int]
    HE_FIELD_NUMBER: _ClassVar[int]
    GROUPING_FIELD_NUMBER: _ClassVar[int]
    kind: TaskKind
    task_id: str
    federation_id: str
    round: int
    phase: str
    plan_sha256: str
    adapter_index: int
    globals_sha256: str
    local_steps: int
    deadline_unix_s: float
    retry_after_ms: int
    message: str
    adapter_sha256: _containers.RepeatedScalarFieldContainer[str]
    secagg: SecAggContext
    he: HeTaskContext
    grouping: MembershipGrouping
    def __init__(self, kind: _Optional[_Union[TaskKind, str]] = ..., task_id: _Optional[str] = ..., federation_id: _Optional[str] = ..., round: _Optional[int] = ..., phase: _Optional[str] = ..., plan_sha256: _Optional[str] = ..., adapter_index: _Optional[int] = ..., globals_sha256: _Optional[str] = ..., local_steps: _Optional[int] = ..., deadline_unix_s: _Optional[float] = ..., retry_after_ms: _Optional[int] = ..., message: _Optional[str] = ..., adapter_sha256: _Optional[_Iterable[str]] = ..., secagg: _Optional[_Union[SecAggContext, _Mapping]] = ..., he: _Optional[_Union[HeTaskContext, _Mapping]] = ..., grouping: _Optional[_Union[MembershipGrouping, _Mapping]] = ...) -> None: ...

class MembershipGrouping(_message.Message):
    __slots__ = ("attempt", "candidate_certs")
    class CandidateCertsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_CERTS_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    candidate_certs: _containers.ScalarMap[str, bytes]
    def __init__(self, attempt: _Optional[int] = ..., candidate_certs: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class HeTaskContext(_message.Message):
    __slots__ = ("key_epoch", "weight_denominator")
    KEY_EPOCH_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DENOMINATOR_FIELD_NUMBER: _ClassVar[int]
    key_epoch: int
    weight_denominator: int
    def __init__(self, key_epoch: _Optional[int] = ..., weight_denominator: _Optional[int] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("federation_id", "task_id", "adapter_index", "final")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_INDEX_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    task_id: str
    adapter_index: int
    final: bool
    def __init__(self, federation_id: _Optional[str] = ..., task_id: _Optional[str] = ..., adapter_index: _Optional[int] = ..., final: _Optional[bool] = ...) -> None: ...

class TensorEntry(_message.Message):
    __slots__ = ("name", "shape", "offset")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    offset: int
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., offset: _Optional[int] = ...) -> None: ...

class TensorManifest(_message.Message):
    __slots__ = ("tensors", "dtype", "total_bytes", "sha256")
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[TensorEntry]
    dtype: str
    total_bytes: int
    sha256: str
    def __init__(self, tensors: _Optional[_Iterable[_Union[TensorEntry, _Mapping]]] = ..., dtype: _Optional[str] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class TensorChunk(_message.Message):
    __slots__ = ("manifest", "data", "he")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    HE_FIELD_NUMBER: _ClassVar[int]
    manifest: TensorManifest
    data: bytes
    he: HeGlobalsHeader
    def __init__(self, manifest: _Optional[_Union[TensorManifest, _Mapping]] = ..., data: _Optional[bytes] = ..., he: _Optional[_Union[HeGlobalsHeader, _Mapping]] = ...) -> None: ...

class HeGlobalsHeader(_message.Message):
    __slots__ = ("manifest_json", "statement_json", "certificates", "round", "clusters")
    class CertificatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    class ClustersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    manifest_json: bytes
    statement_json: bytes
    certificates: _containers.ScalarMap[str, bytes]
    round: int
    clusters: _containers.ScalarMap[str, int]
    def __init__(self, manifest_json: _Optional[bytes] = ..., statement_json: _Optional[bytes] = ..., certificates: _Optional[_Mapping[str, bytes]] = ..., round: _Optional[int] = ..., clusters: _Optional[_Mapping[str, int]] = ...) -> None: ...

class UpdateHeader(_message.Message):
    __slots__ = ("federation_id", "task_id", "round", "phase", "plan_sha256", "adapter_index", "protection", "manifest", "num_examples", "ledger_entries", "he_manifest_json", "he_commitment_json")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PLAN_SHA256_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_INDEX_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    HE_MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    HE_COMMITMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    task_id: str
    round: int
    phase: str
    plan_sha256: str
    adapter_index: int
    protection: str
    manifest: TensorManifest
    num_examples: int
    ledger_entries: _containers.RepeatedScalarFieldContainer[bytes]
    he_manifest_json: bytes
    he_commitment_json: bytes
    def __init__(self, federation_id: _Optional[str] = ..., task_id: _Optional[str] = ..., round: _Optional[int] = ..., phase: _Optional[str] = ..., plan_sha256: _Optional[str] = ..., adapter_index: _Optional[int] = ..., protection: _Optional[str] = ..., manifest: _Optional[_Union[TensorManifest, _Mapping]] = ..., num_examples: _Optional[int] = ..., ledger_entries: _Optional[_Iterable[bytes]] = ..., he_manifest_json: _Optional[bytes] = ..., he_commitment_json: _Optional[bytes] = ...) -> None: ...

class UploadPart(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UpdateHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UpdateHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("accepted", "message", "ledger_next_seq")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LEDGER_NEXT_SEQ_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    message: str
    ledger_next_seq: int
    def __init__(self, accepted: _Optional[bool] = ..., message: _Optional[str] = ..., ledger_next_seq: _Optional[int] = ...) -> None: ...

class LossReport(_message.Message):
    __slots__ = ("federation_id", "task_id", "round", "plan_sha256", "losses", "ledger_entries", "sealed")
    class SealedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PLAN_SHA256_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    task_id: str
    round: int
    plan_sha256: str
    losses: _containers.RepeatedScalarFieldContainer[float]
    ledger_entries: _containers.RepeatedScalarFieldContainer[bytes]
    sealed: _containers.ScalarMap[str, bytes]
    def __init__(self, federation_id: _Optional[str] = ..., task_id: _Optional[str] = ..., round: _Optional[int] = ..., plan_sha256: _Optional[str] = ..., losses: _Optional[_Iterable[float]] = ..., ledger_entries: _Optional[_Iterable[bytes]] = ..., sealed: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class DeclineRequest(_message.Message):
    __slots__ = ("federation_id", "task_id", "round", "reason_code", "message", "epsilon_spent", "ledger_entries")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    task_id: str
    round: int
    reason_code: str
    message: str
    epsilon_spent: float
    ledger_entries: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, federation_id: _Optional[str] = ..., task_id: _Optional[str] = ..., round: _Optional[int] = ..., reason_code: _Optional[str] = ..., message: _Optional[str] = ..., epsilon_spent: _Optional[float] = ..., ledger_entries: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SecAggContext(_message.Message):
    __slots__ = ("federation_id", "round", "plan_sha256", "seed", "grouping_digest")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PLAN_SHA256_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    GROUPING_DIGEST_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    round: int
    plan_sha256: str
    seed: bytes
    grouping_digest: bytes
    def __init__(self, federation_id: _Optional[str] = ..., round: _Optional[int] = ..., plan_sha256: _Optional[str] = ..., seed: _Optional[bytes] = ..., grouping_digest: _Optional[bytes] = ...) -> None: ...

class SecAggKeyAdvertisement(_message.Message):
    __slots__ = ("silo_id", "mask_public_key", "share_public_key", "certificate_pem", "signature")
    SILO_ID_FIELD_NUMBER: _ClassVar[int]
    MASK_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SHARE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    silo_id: str
    mask_public_key: bytes
    share_public_key: bytes
    certificate_pem: bytes
    signature: bytes
    def __init__(self, silo_id: _Optional[str] = ..., mask_public_key: _Optional[bytes] = ..., share_public_key: _Optional[bytes] = ..., certificate_pem: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SecAggRoster(_message.Message):
    __slots__ = ("advertisements",)
    ADVERTISEMENTS_FIELD_NUMBER: _ClassVar[int]
    advertisements: _containers.RepeatedCompositeFieldContainer[SecAggKeyAdvertisement]
    def __init__(self, advertisements: _Optional[_Iterable[_Union[SecAggKeyAdvertisement, _Mapping]]] = ...) -> None: ...

class SecAggEncryptedShares(_message.Message):
    __slots__ = ("ciphertexts",)
    class CiphertextsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    ciphertexts: _containers.ScalarMap[str, bytes]
    def __init__(self, ciphertexts: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class SecAggShareDelivery(_message.Message):
    __slots__ = ("senders", "ciphertexts")
    class CiphertextsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SENDERS_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    senders: _containers.RepeatedScalarFieldContainer[str]
    ciphertexts: _containers.ScalarMap[str, bytes]
    def __init__(self, senders: _Optional[_Iterable[str]] = ..., ciphertexts: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class SecAggConsistencyRequest(_message.Message):
    __slots__ = ("survivors",)
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    survivors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, survivors: _Optional[_Iterable[str]] = ...) -> None: ...

class SecAggSurvivorSignature(_message.Message):
    __slots__ = ("signature",)
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    signature: bytes
    def __init__(self, signature: _Optional[bytes] = ...) -> None: ...

class SecAggUnmaskRequest(_message.Message):
    __slots__ = ("survivors", "dropped", "signatures")
    class SignaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    survivors: _containers.RepeatedScalarFieldContainer[str]
    dropped: _containers.RepeatedScalarFieldContainer[str]
    signatures: _containers.ScalarMap[str, bytes]
    def __init__(self, survivors: _Optional[_Iterable[str]] = ..., dropped: _Optional[_Iterable[str]] = ..., signatures: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class SecAggUnmaskResponse(_message.Message):
    __slots__ = ("self_mask_shares", "mask_key_shares")
    class SelfMaskSharesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    class MaskKeySharesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SELF_MASK_SHARES_FIELD_NUMBER: _ClassVar[int]
    MASK_KEY_SHARES_FIELD_NUMBER: _ClassVar[int]
    self_mask_shares: _containers.ScalarMap[str, bytes]
    mask_key_shares: _containers.ScalarMap[str, bytes]
    def __init__(self, self_mask_shares: _Optional[_Mapping[str, bytes]] = ..., mask_key_shares: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class SecAggSubmission(_message.Message):
    __slots__ = ("federation_id", "task_id", "context", "advertisement", "shares", "survivor_signature", "unmask_response")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ADVERTISEMENT_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    SURVIVOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    UNMASK_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    task_id: str
    context: SecAggContext
    advertisement: SecAggKeyAdvertisement
    shares: SecAggEncryptedShares
    survivor_signature: SecAggSurvivorSignature
    unmask_response: SecAggUnmaskResponse
    def __init__(self, federation_id: _Optional[str] = ..., task_id: _Optional[str] = ..., context: _Optional[_Union[SecAggContext, _Mapping]] = ..., advertisement: _Optional[_Union[SecAggKeyAdvertisement, _Mapping]] = ..., shares: _Optional[_Union[SecAggEncryptedShares, _Mapping]] = ..., survivor_signature: _Optional[_Union[SecAggSurvivorSignature, _Mapping]] = ..., unmask_response: _Optional[_Union[SecAggUnmaskResponse, _Mapping]] = ...) -> None: ...

class SecAggFetchRequest(_message.Message):
    __slots__ = ("federation_id", "task_id", "stage", "wait_ms")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    task_id: str
    stage: SecAggStage
    wait_ms: int
    def __init__(self, federation_id: _Optional[str] = ..., task_id: _Optional[str] = ..., stage: _Optional[_Union[SecAggStage, str]] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class SecAggBroadcast(_message.Message):
    __slots__ = ("aborted", "message", "retry_after_ms", "context", "roster", "delivery", "consistency", "unmask_request")
    ABORTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ROSTER_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    UNMASK_REQUEST_FIELD_NUMBER: _ClassVar[int]
    aborted: bool
    message: str
    retry_after_ms: int
    context: SecAggContext
    roster: SecAggRoster
    delivery: SecAggShareDelivery
    consistency: SecAggConsistencyRequest
    unmask_request: SecAggUnmaskRequest
    def __init__(self, aborted: _Optional[bool] = ..., message: _Optional[str] = ..., retry_after_ms: _Optional[int] = ..., context: _Optional[_Union[SecAggContext, _Mapping]] = ..., roster: _Optional[_Union[SecAggRoster, _Mapping]] = ..., delivery: _Optional[_Union[SecAggShareDelivery, _Mapping]] = ..., consistency: _Optional[_Union[SecAggConsistencyRequest, _Mapping]] = ..., unmask_request: _Optional[_Union[SecAggUnmaskRequest, _Mapping]] = ...) -> None: ...

class HeKeysRequest(_message.Message):
    __slots__ = ("federation_id", "key_epoch")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_EPOCH_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    key_epoch: int
    def __init__(self, federation_id: _Optional[str] = ..., key_epoch: _Optional[int] = ...) -> None: ...

class HeKeysReply(_message.Message):
    __slots__ = ("key_epoch", "public_context", "sealed_context", "waiting_certificates", "revoked_serials")
    class WaitingCertificatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    KEY_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SEALED_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    WAITING_CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    REVOKED_SERIALS_FIELD_NUMBER: _ClassVar[int]
    key_epoch: int
    public_context: bytes
    sealed_context: bytes
    waiting_certificates: _containers.ScalarMap[str, bytes]
    revoked_serials: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key_epoch: _Optional[int] = ..., public_context: _Optional[bytes] = ..., sealed_context: _Optional[bytes] = ..., waiting_certificates: _Optional[_Mapping[str, bytes]] = ..., revoked_serials: _Optional[_Iterable[str]] = ...) -> None: ...

class HeKeyUpload(_message.Message):
    __slots__ = ("federation_id", "key_epoch", "public_context", "sealed_contexts")
    class SealedContextsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SEALED_CONTEXTS_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    key_epoch: int
    public_context: bytes
    sealed_contexts: _containers.ScalarMap[str, bytes]
    def __init__(self, federation_id: _Optional[str] = ..., key_epoch: _Optional[int] = ..., public_context: _Optional[bytes] = ..., sealed_contexts: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class HeSpotCheckRequest(_message.Message):
    __slots__ = ("federation_id", "task_id", "adapter_index", "chunk_index", "final")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    task_id: str
    adapter_index: int
    chunk_index: int
    final: bool
    def __init__(self, federation_id: _Optional[str] = ..., task_id: _Optional[str] = ..., adapter_index: _Optional[int] = ..., chunk_index: _Optional[int] = ..., final: _Optional[bool] = ...) -> None: ...

class HeChunk(_message.Message):
    __slots__ = ("manifest_json", "data")
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    manifest_json: bytes
    data: bytes
    def __init__(self, manifest_json: _Optional[bytes] = ..., data: _Optional[bytes] = ...) -> None: ...

class HeSpotCheckReply(_message.Message):
    __slots__ = ("aggregate", "previous", "contributions")
    class ContributionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: HeChunk
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[HeChunk, _Mapping]] = ...) -> None: ...
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    aggregate: HeChunk
    previous: HeChunk
    contributions: _containers.MessageMap[str, HeChunk]
    def __init__(self, aggregate: _Optional[_Union[HeChunk, _Mapping]] = ..., previous: _Optional[_Union[HeChunk, _Mapping]] = ..., contributions: _Optional[_Mapping[str, HeChunk]] = ...) -> None: ...

class GroupingFetchRequest(_message.Message):
    __slots__ = ("federation_id", "task_id", "attempt", "stage", "wait_ms")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    task_id: str
    attempt: int
    stage: GroupingStage
    wait_ms: int
    def __init__(self, federation_id: _Optional[str] = ..., task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., stage: _Optional[_Union[GroupingStage, str]] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class GroupingConfirmationEntry(_message.Message):
    __slots__ = ("digest", "signature")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    digest: bytes
    signature: bytes
    def __init__(self, digest: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class GroupingBroadcast(_message.Message):
    __slots__ = ("aborted", "message", "retry_after_ms", "attempt", "final_roster", "inbox", "confirmations")
    class InboxEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    class ConfirmationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: GroupingConfirmationEntry
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[GroupingConfirmationEntry, _Mapping]] = ...) -> None: ...
    ABORTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FINAL_ROSTER_FIELD_NUMBER: _ClassVar[int]
    INBOX_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATIONS_FIELD_NUMBER: _ClassVar[int]
    aborted: bool
    message: str
    retry_after_ms: int
    attempt: int
    final_roster: _containers.RepeatedScalarFieldContainer[str]
    inbox: _containers.ScalarMap[str, bytes]
    confirmations: _containers.MessageMap[str, GroupingConfirmationEntry]
    def __init__(self, aborted: _Optional[bool] = ..., message: _Optional[str] = ..., retry_after_ms: _Optional[int] = ..., attempt: _Optional[int] = ..., final_roster: _Optional[_Iterable[str]] = ..., inbox: _Optional[_Mapping[str, bytes]] = ..., confirmations: _Optional[_Mapping[str, GroupingConfirmationEntry]] = ...) -> None: ...

class GroupingConfirmation(_message.Message):
    __slots__ = ("federation_id", "task_id", "attempt", "digest", "signature")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    task_id: str
    attempt: int
    digest: bytes
    signature: bytes
    def __init__(self, federation_id: _Optional[str] = ..., task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., digest: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...
