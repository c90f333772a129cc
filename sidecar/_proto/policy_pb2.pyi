from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Image(_message.Message):
    __slots__ = ("registry", "repository", "tag", "digest", "labels", "annotations", "created_at", "size_bytes", "platforms", "present_at")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    PRESENT_AT_FIELD_NUMBER: _ClassVar[int]
    registry: str
    repository: str
    tag: str
    digest: str
    labels: _containers.ScalarMap[str, str]
    annotations: _containers.ScalarMap[str, str]
    created_at: str
    size_bytes: int
    platforms: _containers.RepeatedScalarFieldContainer[str]
    present_at: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, registry: _Optional[str] = ..., repository: _Optional[str] = ..., tag: _Optional[str] = ..., digest: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[str] = ..., size_bytes: _Optional[int] = ..., platforms: _Optional[_Iterable[str]] = ..., present_at: _Optional[_Iterable[str]] = ...) -> None: ...

class Caller(_message.Message):
    __slots__ = ("subject", "tenant", "roles")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    subject: str
    tenant: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subject: _Optional[str] = ..., tenant: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class TenantUsage(_message.Message):
    __slots__ = ("id", "storage_used_bytes", "storage_limit_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    STORAGE_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    storage_used_bytes: int
    storage_limit_bytes: int
    def __init__(self, id: _Optional[str] = ..., storage_used_bytes: _Optional[int] = ..., storage_limit_bytes: _Optional[int] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("image", "event", "caller", "now", "registry_health", "access", "tenant_usage", "request_id")
    class RegistryHealthEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bool
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bool] = ...) -> None: ...
    class AccessEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_HEALTH_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    TENANT_USAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    image: Image
    event: str
    caller: Caller
    now: str
    registry_health: _containers.ScalarMap[str, bool]
    access: _containers.ScalarMap[str, int]
    tenant_usage: TenantUsage
    request_id: str
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., event: _Optional[str] = ..., caller: _Optional[_Union[Caller, _Mapping]] = ..., now: _Optional[str] = ..., registry_health: _Optional[_Mapping[str, bool]] = ..., access: _Optional[_Mapping[str, int]] = ..., tenant_usage: _Optional[_Union[TenantUsage, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("registry", "repository", "tag", "rank")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    registry: str
    repository: str
    tag: str
    rank: int
    def __init__(self, registry: _Optional[str] = ..., repository: _Optional[str] = ..., tag: _Optional[str] = ..., rank: _Optional[int] = ...) -> None: ...

class Denial(_message.Message):
    __slots__ = ("registry", "reasons")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    registry: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, registry: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class Deferral(_message.Message):
    __slots__ = ("registry", "reason")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    registry: str
    reason: str
    def __init__(self, registry: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("type", "tenant", "keep_last", "older_than_days")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KEEP_LAST_FIELD_NUMBER: _ClassVar[int]
    OLDER_THAN_DAYS_FIELD_NUMBER: _ClassVar[int]
    type: str
    tenant: str
    keep_last: int
    older_than_days: int
    def __init__(self, type: _Optional[str] = ..., tenant: _Optional[str] = ..., keep_last: _Optional[int] = ..., older_than_days: _Optional[int] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("allow", "priority", "routes", "denied", "deferred", "actions", "reasons", "policies", "remove")
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    DENIED_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    allow: bool
    priority: int
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    denied: _containers.RepeatedCompositeFieldContainer[Denial]
    deferred: _containers.RepeatedCompositeFieldContainer[Deferral]
    actions: _containers.RepeatedCompositeFieldContainer[Action]
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    policies: _containers.RepeatedScalarFieldContainer[str]
    remove: _containers.RepeatedCompositeFieldContainer[Denial]
    def __init__(self, allow: _Optional[bool] = ..., priority: _Optional[int] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ..., denied: _Optional[_Iterable[_Union[Denial, _Mapping]]] = ..., deferred: _Optional[_Iterable[_Union[Deferral, _Mapping]]] = ..., actions: _Optional[_Iterable[_Union[Action, _Mapping]]] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., policies: _Optional[_Iterable[str]] = ..., remove: _Optional[_Iterable[_Union[Denial, _Mapping]]] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("decision", "decision_id", "bundle_revision", "trace_id", "degraded", "request_id", "error")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_REVISION_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    decision_id: str
    bundle_revision: str
    trace_id: str
    degraded: bool
    request_id: str
    error: ErrorDetail
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., decision_id: _Optional[str] = ..., bundle_revision: _Optional[str] = ..., trace_id: _Optional[str] = ..., degraded: _Optional[bool] = ..., request_id: _Optional[str] = ..., error: _Optional[_Union[ErrorDetail, _Mapping]] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("code", "message", "field")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    field: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("decision_id",)
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    def __init__(self, decision_id: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("decision_id", "input_json", "result_json", "decision", "bundle_revision", "trace_id", "degraded", "decided_at", "provenance_json")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_REVISION_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_JSON_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    input_json: str
    result_json: str
    decision: Decision
    bundle_revision: str
    trace_id: str
    degraded: bool
    decided_at: str
    provenance_json: str
    def __init__(self, decision_id: _Optional[str] = ..., input_json: _Optional[str] = ..., result_json: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ..., bundle_revision: _Optional[str] = ..., trace_id: _Optional[str] = ..., degraded: _Optional[bool] = ..., decided_at: _Optional[str] = ..., provenance_json: _Optional[str] = ...) -> None: ...

class ReplicateRequest(_message.Message):
    __slots__ = ("request", "dry_run")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    request: DecideRequest
    dry_run: bool
    def __init__(self, request: _Optional[_Union[DecideRequest, _Mapping]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ReplicateResponse(_message.Message):
    __slots__ = ("decision", "job_ids", "jobs")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    decision: DecideResponse
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, decision: _Optional[_Union[DecideResponse, _Mapping]] = ..., job_ids: _Optional[_Iterable[str]] = ..., jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "state", "source", "destination", "digest", "priority", "bytes_total", "bytes_done", "error", "decision_id", "blobs_total", "blobs_done", "attempts", "error_code", "created_at", "updated_at", "dry_run", "bundle_revision", "bytes_moved", "blobs_copied", "blobs_skipped", "blobs_mounted", "referrers_copied", "requests", "kind")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    BLOBS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BLOBS_DONE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_REVISION_FIELD_NUMBER: _ClassVar[int]
    BYTES_MOVED_FIELD_NUMBER: _ClassVar[int]
    BLOBS_COPIED_FIELD_NUMBER: _ClassVar[int]
    BLOBS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    BLOBS_MOUNTED_FIELD_NUMBER: _ClassVar[int]
    REFERRERS_COPIED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: str
    source: str
    destination: str
    digest: str
    priority: int
    bytes_total: int
    bytes_done: int
    error: str
    decision_id: str
    blobs_total: int
    blobs_done: int
    attempts: int
    error_code: str
    created_at: str
    updated_at: str
    dry_run: bool
    bundle_revision: str
    bytes_moved: int
    blobs_copied: int
    blobs_skipped: int
    blobs_mounted: int
    referrers_copied: int
    requests: int
    kind: str
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[str] = ..., source: _Optional[str] = ..., destination: _Optional[str] = ..., digest: _Optional[str] = ..., priority: _Optional[int] = ..., bytes_total: _Optional[int] = ..., bytes_done: _Optional[int] = ..., error: _Optional[str] = ..., decision_id: _Optional[str] = ..., blobs_total: _Optional[int] = ..., blobs_done: _Optional[int] = ..., attempts: _Optional[int] = ..., error_code: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., dry_run: _Optional[bool] = ..., bundle_revision: _Optional[str] = ..., bytes_moved: _Optional[int] = ..., blobs_copied: _Optional[int] = ..., blobs_skipped: _Optional[int] = ..., blobs_mounted: _Optional[int] = ..., referrers_copied: _Optional[int] = ..., requests: _Optional[int] = ..., kind: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("state", "limit")
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    state: str
    limit: int
    def __init__(self, state: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class ResolvePullRequest(_message.Message):
    __slots__ = ("image", "client_region")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REGION_FIELD_NUMBER: _ClassVar[int]
    image: Image
    client_region: str
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., client_region: _Optional[str] = ...) -> None: ...

class ResolvePullResponse(_message.Message):
    __slots__ = ("registry", "repository", "reference", "alternatives", "digest", "region", "proximity", "pull_ref", "candidates")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    PROXIMITY_FIELD_NUMBER: _ClassVar[int]
    PULL_REF_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    registry: str
    repository: str
    reference: str
    alternatives: _containers.RepeatedScalarFieldContainer[str]
    digest: str
    region: str
    proximity: str
    pull_ref: str
    candidates: _containers.RepeatedCompositeFieldContainer[PullCandidate]
    def __init__(self, registry: _Optional[str] = ..., repository: _Optional[str] = ..., reference: _Optional[str] = ..., alternatives: _Optional[_Iterable[str]] = ..., digest: _Optional[str] = ..., region: _Optional[str] = ..., proximity: _Optional[str] = ..., pull_ref: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[PullCandidate, _Mapping]]] = ...) -> None: ...

class PullCandidate(_message.Message):
    __slots__ = ("registry", "repository", "region", "proximity", "healthy", "holds", "problem", "pull_ref")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    PROXIMITY_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    PULL_REF_FIELD_NUMBER: _ClassVar[int]
    registry: str
    repository: str
    region: str
    proximity: str
    healthy: bool
    holds: bool
    problem: str
    pull_ref: str
    def __init__(self, registry: _Optional[str] = ..., repository: _Optional[str] = ..., region: _Optional[str] = ..., proximity: _Optional[str] = ..., healthy: _Optional[bool] = ..., holds: _Optional[bool] = ..., problem: _Optional[str] = ..., pull_ref: _Optional[str] = ...) -> None: ...

class PublishBundleRequest(_message.Message):
    __slots__ = ("bundle", "revision")
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    bundle: bytes
    revision: str
    def __init__(self, bundle: _Optional[bytes] = ..., revision: _Optional[str] = ...) -> None: ...

class PublishBundleResponse(_message.Message):
    __slots__ = ("revision", "digest", "previous_revision", "location", "changed_files", "tenants", "signed_by_sidecar", "audit_seq")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_REVISION_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FILES_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    SIGNED_BY_SIDECAR_FIELD_NUMBER: _ClassVar[int]
    AUDIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    revision: str
    digest: str
    previous_revision: str
    location: str
    changed_files: _containers.RepeatedScalarFieldContainer[str]
    tenants: _containers.RepeatedScalarFieldContainer[str]
    signed_by_sidecar: bool
    audit_seq: int
    def __init__(self, revision: _Optional[str] = ..., digest: _Optional[str] = ..., previous_revision: _Optional[str] = ..., location: _Optional[str] = ..., changed_files: _Optional[_Iterable[str]] = ..., tenants: _Optional[_Iterable[str]] = ..., signed_by_sidecar: _Optional[bool] = ..., audit_seq: _Optional[int] = ...) -> None: ...

class ListRevisionsRequest(_message.Message):
    __slots__ = ("tenant", "limit")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    limit: int
    def __init__(self, tenant: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class Revision(_message.Message):
    __slots__ = ("revision", "digest", "published_at", "published_by", "active", "size_bytes", "changed_files", "tenants")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_BY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FILES_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    revision: str
    digest: str
    published_at: str
    published_by: str
    active: bool
    size_bytes: int
    changed_files: _containers.RepeatedScalarFieldContainer[str]
    tenants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revision: _Optional[str] = ..., digest: _Optional[str] = ..., published_at: _Optional[str] = ..., published_by: _Optional[str] = ..., active: _Optional[bool] = ..., size_bytes: _Optional[int] = ..., changed_files: _Optional[_Iterable[str]] = ..., tenants: _Optional[_Iterable[str]] = ...) -> None: ...

class ListRevisionsResponse(_message.Message):
    __slots__ = ("revisions",)
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[Revision]
    def __init__(self, revisions: _Optional[_Iterable[_Union[Revision, _Mapping]]] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: str
    def __init__(self, revision: _Optional[str] = ...) -> None: ...

class RollbackResponse(_message.Message):
    __slots__ = ("revision", "previous_revision", "digest", "audit_seq")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_REVISION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    AUDIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    revision: str
    previous_revision: str
    digest: str
    audit_seq: int
    def __init__(self, revision: _Optional[str] = ..., previous_revision: _Optional[str] = ..., digest: _Optional[str] = ..., audit_seq: _Optional[int] = ...) -> None: ...

class GetAuditLogRequest(_message.Message):
    __slots__ = ("limit", "tenant", "before_seq")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    limit: int
    tenant: str
    before_seq: int
    def __init__(self, limit: _Optional[int] = ..., tenant: _Optional[str] = ..., before_seq: _Optional[int] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("seq", "at", "actor", "action", "old_revision", "new_revision", "digest", "hash", "outcome", "changed_files", "detail", "prev_hash", "tenants")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OLD_REVISION_FIELD_NUMBER: _ClassVar[int]
    NEW_REVISION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FILES_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at: str
    actor: str
    action: str
    old_revision: str
    new_revision: str
    digest: str
    hash: str
    outcome: str
    changed_files: _containers.RepeatedScalarFieldContainer[str]
    detail: str
    prev_hash: str
    tenants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, seq: _Optional[int] = ..., at: _Optional[str] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., old_revision: _Optional[str] = ..., new_revision: _Optional[str] = ..., digest: _Optional[str] = ..., hash: _Optional[str] = ..., outcome: _Optional[str] = ..., changed_files: _Optional[_Iterable[str]] = ..., detail: _Optional[str] = ..., prev_hash: _Optional[str] = ..., tenants: _Optional[_Iterable[str]] = ...) -> None: ...

class GetAuditLogResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ...) -> None: ...

class ValidateBundleRequest(_message.Message):
    __slots__ = ("bundle", "preview_impact")
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_IMPACT_FIELD_NUMBER: _ClassVar[int]
    bundle: bytes
    preview_impact: bool
    def __init__(self, bundle: _Optional[bytes] = ..., preview_impact: _Optional[bool] = ...) -> None: ...

class BundleProblem(_message.Message):
    __slots__ = ("check", "location", "message")
    CHECK_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    check: str
    location: str
    message: str
    def __init__(self, check: _Optional[str] = ..., location: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ValidateBundleResponse(_message.Message):
    __slots__ = ("valid", "problems", "revision", "digest", "details", "files", "signed", "tests_run", "impact", "impact_error")
    VALID_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    TESTS_RUN_FIELD_NUMBER: _ClassVar[int]
    IMPACT_FIELD_NUMBER: _ClassVar[int]
    IMPACT_ERROR_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    problems: _containers.RepeatedScalarFieldContainer[str]
    revision: str
    digest: str
    details: _containers.RepeatedCompositeFieldContainer[BundleProblem]
    files: _containers.RepeatedScalarFieldContainer[str]
    signed: bool
    tests_run: int
    impact: ReconcileImpact
    impact_error: str
    def __init__(self, valid: _Optional[bool] = ..., problems: _Optional[_Iterable[str]] = ..., revision: _Optional[str] = ..., digest: _Optional[str] = ..., details: _Optional[_Iterable[_Union[BundleProblem, _Mapping]]] = ..., files: _Optional[_Iterable[str]] = ..., signed: _Optional[bool] = ..., tests_run: _Optional[int] = ..., impact: _Optional[_Union[ReconcileImpact, _Mapping]] = ..., impact_error: _Optional[str] = ...) -> None: ...

class ReconcileRequest(_message.Message):
    __slots__ = ("dry_run", "candidate_bundle")
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    candidate_bundle: bytes
    def __init__(self, dry_run: _Optional[bool] = ..., candidate_bundle: _Optional[bytes] = ...) -> None: ...

class ReconcileAction(_message.Message):
    __slots__ = ("kind", "registry", "repository", "tag", "digest", "source", "size_bytes", "priority", "rank", "decision_id", "bundle_revision", "reasons", "blocked")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_REVISION_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    kind: str
    registry: str
    repository: str
    tag: str
    digest: str
    source: str
    size_bytes: int
    priority: int
    rank: int
    decision_id: str
    bundle_revision: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    blocked: str
    def __init__(self, kind: _Optional[str] = ..., registry: _Optional[str] = ..., repository: _Optional[str] = ..., tag: _Optional[str] = ..., digest: _Optional[str] = ..., source: _Optional[str] = ..., size_bytes: _Optional[int] = ..., priority: _Optional[int] = ..., rank: _Optional[int] = ..., decision_id: _Optional[str] = ..., bundle_revision: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ..., blocked: _Optional[str] = ...) -> None: ...

class ReconcileSummary(_message.Message):
    __slots__ = ("images", "degraded", "bundle_revision", "counts", "bytes_to_copy", "bytes_freed", "unreadable")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class UnreadableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_REVISION_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    BYTES_TO_COPY_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_FIELD_NUMBER: _ClassVar[int]
    images: int
    degraded: int
    bundle_revision: str
    counts: _containers.ScalarMap[str, int]
    bytes_to_copy: int
    bytes_freed: int
    unreadable: _containers.ScalarMap[str, str]
    def __init__(self, images: _Optional[int] = ..., degraded: _Optional[int] = ..., bundle_revision: _Optional[str] = ..., counts: _Optional[_Mapping[str, int]] = ..., bytes_to_copy: _Optional[int] = ..., bytes_freed: _Optional[int] = ..., unreadable: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ReconcileEvent(_message.Message):
    __slots__ = ("planned", "summary", "job", "removed", "refused", "done", "impact", "preview")
    PLANNED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    IMPACT_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    planned: ReconcileAction
    summary: ReconcileSummary
    job: Job
    removed: ReconcileAction
    refused: ReconcileAction
    done: str
    impact: ReconcileImpact
    preview: bool
    def __init__(self, planned: _Optional[_Union[ReconcileAction, _Mapping]] = ..., summary: _Optional[_Union[ReconcileSummary, _Mapping]] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., removed: _Optional[_Union[ReconcileAction, _Mapping]] = ..., refused: _Optional[_Union[ReconcileAction, _Mapping]] = ..., done: _Optional[str] = ..., impact: _Optional[_Union[ReconcileImpact, _Mapping]] = ..., preview: _Optional[bool] = ...) -> None: ...

class ReconcileChange(_message.Message):
    __slots__ = ("kind", "image", "target", "before", "after", "size_bytes")
    KIND_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    kind: str
    image: str
    target: str
    before: str
    after: str
    size_bytes: int
    def __init__(self, kind: _Optional[str] = ..., image: _Optional[str] = ..., target: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ReconcileImpact(_message.Message):
    __slots__ = ("changes", "before_revision", "after_revision", "totals")
    class TotalsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    BEFORE_REVISION_FIELD_NUMBER: _ClassVar[int]
    AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[ReconcileChange]
    before_revision: str
    after_revision: str
    totals: _containers.ScalarMap[str, int]
    def __init__(self, changes: _Optional[_Iterable[_Union[ReconcileChange, _Mapping]]] = ..., before_revision: _Optional[str] = ..., after_revision: _Optional[str] = ..., totals: _Optional[_Mapping[str, int]] = ...) -> None: ...
