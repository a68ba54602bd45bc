"""The store's release model: versions of an app, their validation runs, review and release.

draft --submit--> in_review --approve--> approved --release--> live
                            --reject--> rejected             live --withdraw--> withdrawn
live --(a newer version released to all its targets)--> superseded

* A CI token uploads; the version starts as ``draft`` with a validation ``running``.
* A version whose latest validation run did not pass (a blocking finding) cannot leave draft.
* Developers of the tenant submit; store reviewers approve or reject (with a reason); store
  admins release to targets (countries, vehicle contexts), stage the rollout (raise, halt,
  resume), withdraw, and file issues against live versions. CI tokens do none of these.
* Every transition is checked and recorded (who, when, from, to) in the version's history.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pycountry

from appyard import errors
from appyard.core import apps, arrivals, builds, identity, jobs, outbox, uploads
from appyard.core.context import Services
from appyard.core.ids import new_id
from appyard.core.models import (
    Actor,
    App,
    Build,
    ConfigVersion,
    Finding,
    IssueStatus,
    Platform,
    Role,
    RunStatus,
    StoreIssue,
    Targets,
    TokenKind,
    UploadPurpose,
    ValidationRun,
    Version,
    VersionEvent,
    VersionStatus,
)
from appyard.core.ports import Clock, UnitOfWork
from appyard.inspect import upload_identity

SOURCE = "store-ci"  # how versions' builds arrive (the store CI upload API)
STAFF = (Role.STORE_ADMIN, Role.STORE_REVIEWER)
# A version's history actions -> the topic of the event each emits (version.<topic>).
TOPICS = {
    "submit": "submitted",
    "approve": "approved",
    "reject": "rejected",
    "release": "released",
    "supersede": "superseded",
    "withdraw": "withdrawn",
    "halt": "halted",
    "resume": "resumed",
    "rollout": "rollout_changed",
}
ISSUE_SEVERITIES = ("low", "medium", "high", "critical")
MAX_TITLE = 200  # an issue's title
MAX_REASON = 2000  # a rejection's or withdrawal's reason
MAX_TARGETS = 300  # countries or vehicle contexts of a release
MAX_CONTEXT = 100  # one vehicle context


def _bounded(value: str, limit: int, field: str) -> str:
    """Free text, stripped, at most ``limit`` characters (refused beyond, never cut)."""
    text = value.strip()
    if len(text) > limit:
        raise errors.InvalidField(f"{field} is at most {limit} characters.", field=field)
    return text


# Who may do what, and from which status (docs/store-api.md): the one table both the actions
# below and :func:`allowed_actions` (what the portal offers) read.
ROLES: dict[str, tuple[Role, ...]] = {
    "submit": (Role.DEVELOPER, Role.STORE_ADMIN),
    "approve": STAFF,
    "reject": STAFF,
    "release": (Role.STORE_ADMIN,),
    "rollout": (Role.STORE_ADMIN,),
    "halt": (Role.STORE_ADMIN,),
    "resume": (Role.STORE_ADMIN,),
    "withdraw": (Role.STORE_ADMIN,),
    "file_issue": STAFF,
    "resolve_issue": STAFF,
}
FROM: dict[str, tuple[VersionStatus, ...]] = {
    "submit": (VersionStatus.DRAFT,),
    "approve": (VersionStatus.IN_REVIEW,),
    "reject": (VersionStatus.IN_REVIEW, VersionStatus.APPROVED),
    "release": (VersionStatus.APPROVED,),
    "rollout": (VersionStatus.LIVE,),
    "halt": (VersionStatus.LIVE,),
    "resume": (VersionStatus.LIVE,),
    "withdraw": (VersionStatus.LIVE,),
    "file_issue": (VersionStatus.LIVE,),
}


class UnsignedApk(errors.InvalidArtifact):
    """APK is not signed with a production certificate."""

    code = "apk.unsigned"


class VersionTransitionNotAllowed(errors.Conflict):
    """This change is not allowed from the version's current status."""

    code = "version.transition_not_allowed"


# --- reading ------------------------------------------------------------------------------------


def get(uow: UnitOfWork, actor: Actor, *, version_id: str) -> Version:
    """A version the actor may see: its tenant's, or any for store staff; else 404."""
    version = uow.versions.get(version_id)
    if version is None or (actor.role not in STAFF and version.tenant_id != actor.tenant_id):
        raise errors.NotFound(f"Version {version_id} not found.")
    return version


def open_issue_count(uow: UnitOfWork, version: Version) -> int:
    return sum(1 for i in uow.issues.for_version(version.id) if i.status is IssueStatus.OPEN)


def runs(uow: UnitOfWork, actor: Actor, *, version_id: str) -> list[ValidationRun]:
    return uow.runs.for_version(get(uow, actor, version_id=version_id).id)


def history(uow: UnitOfWork, actor: Actor, *, version_id: str) -> list[VersionEvent]:
    return uow.events.for_version(get(uow, actor, version_id=version_id).id)


def issues(uow: UnitOfWork, actor: Actor, *, version_id: str) -> list[StoreIssue]:
    return uow.issues.for_version(get(uow, actor, version_id=version_id).id)


def targets(version: Version) -> Targets:
    return Targets(countries=version.countries, vehicle_contexts=version.vehicle_contexts)


def listing(
    uow: UnitOfWork,
    actor: Actor,
    *,
    statuses: tuple[VersionStatus, ...] | None = None,
    limit: int = 200,
) -> list[Version]:
    """Versions the actor may see (every tenant's for store staff, the tenant's for its
    members and tokens), most recently changed first."""
    tenant_id = None if actor.is_user and actor.role in STAFF else actor.tenant
    return uow.versions.listing(
        tenant_id=tenant_id,
        statuses=tuple(s.value for s in statuses) if statuses is not None else None,
        limit=max(1, min(limit, 1000)),
    )


@dataclass(frozen=True)
class Summary:
    """A version as a list of versions shows it."""

    version: Version
    app: App | None
    tenant_name: str
    run: ValidationRun | None  # the latest validation run
    open_issues: int
    findings: int
    allowed: frozenset[str]  # what the actor may do to it now (allowed_actions)


def summarize(uow: UnitOfWork, actor: Actor, version: Version) -> Summary:
    version = get(uow, actor, version_id=version.id)
    tenant = uow.tenants.get(version.tenant_id)
    return Summary(
        version=version,
        app=uow.apps.get(version.app_id),
        tenant_name=tenant.name if tenant else version.tenant_id,
        run=latest_run(uow, version.id),
        open_issues=open_issue_count(uow, version),
        findings=len(uow.findings.list(version.build_id)),
        allowed=allowed_actions(uow, actor, version),
    )


def build_of(uow: UnitOfWork, actor: Actor, *, version_id: str) -> Build:
    """The build behind a version the actor may see (its facts, findings and file)."""
    version = get(uow, actor, version_id=version_id)
    build = uow.builds.get(version.build_id)
    if build is None:
        raise errors.NotFound(f"Version {version_id} has no build.")
    return build


def findings_of(uow: UnitOfWork, actor: Actor, *, version_id: str) -> list[Finding]:
    return uow.findings.list(build_of(uow, actor, version_id=version_id).id)


def app_of(uow: UnitOfWork, actor: Actor, *, version_id: str) -> App | None:
    return uow.apps.get(get(uow, actor, version_id=version_id).app_id)


# --- the CI upload ------------------------------------------------------------------------------


def ingest_ci_upload(
    svc: Services,
    uow: UnitOfWork,
    actor: Actor,
    *,
    path: Path,
    file_name: str,
) -> tuple[Version, ValidationRun]:
    """A streamed-to-disk APK becomes a draft version with a running validation.

    The upload-time fast path of the inspection reads the identity (package, version code
    and name) and whether any signature is present; the full inspection (signatures verified)
    and the controls run in the validation job, queued when the file arrives in the store.
    """
    identity.require_token(actor, TokenKind.CI, action="uploads")
    tenant_id = actor.tenant
    facts, signed = upload_identity(path)
    if not signed:
        raise UnsignedApk()
    try:
        code = int(facts.version_code or "")
    except ValueError:
        raise errors.InvalidArtifact("The APK's manifest has no valid versionCode.") from None
    name = uploads.clean_file_name(file_name) if file_name.endswith(".apk") else "app.apk"
    clock = svc.clock
    now = clock.now()
    app = apps.find_or_create(
        uow, clock, tenant_id=tenant_id, platform=Platform.ANDROID, identifier=facts.identifier
    )
    earlier = uow.versions.for_app(app.id)
    highest = max((v.version_code for v in earlier), default=None)
    if highest is not None and code <= highest:
        raise errors.VersionCodeExists(
            f"versionCode {code} is not greater than {highest}, the highest versionCode of "
            f"{facts.identifier} so far.",
            version_code=code,
            highest=highest,
        )
    build, _ = builds.create(
        uow,
        clock,
        tenant_id=tenant_id,
        platform=Platform.ANDROID,
        config_version=ConfigVersion.PRODUCTION,
        file_name=name,
        source=SOURCE,
        job_kind=jobs.VALIDATE_VERSION,
        app_id=app.id,
        identifier=facts.identifier,
        version_code=str(code),
        version_name=facts.version_name,
    )
    version = Version(
        id=new_id("ver"),
        tenant_id=tenant_id,
        app_id=app.id,
        build_id=build.id,
        version_code=code,
        version_name=facts.version_name or "",
        status=VersionStatus.DRAFT,
        created_at=now,
        updated_at=now,
    )
    run = ValidationRun(
        id=new_id("run"),
        version_id=version.id,
        build_id=build.id,
        status=RunStatus.RUNNING,
        created_at=now,
    )
    uow.versions.add(version)
    uow.runs.add(run)
    _record(
        uow, clock, version, "uploaded", None, VersionStatus.DRAFT, actor, {"build_id": build.id}
    )
    ticket = uploads.open_upload(
        uow,
        clock,
        svc.store,
        svc.policy,
        tenant_id=tenant_id,
        purpose=UploadPurpose.BUILD,
        subject_id=build.id,
        key=build.source_key,
        file_name=name,
        max_size=svc.policy.max_size,
        signed=False,
    )
    arrivals.adopt(svc, uow, ticket.upload, path)
    return version, run


def latest_run(uow: UnitOfWork, version_id: str) -> ValidationRun | None:
    found = uow.runs.for_version(version_id)
    return found[-1] if found else None


def previous_accepted(uow: UnitOfWork, version: Version) -> Version | None:
    """The app's latest earlier version whose validation passed and was not rejected."""
    best = None
    for other in uow.versions.for_app(version.app_id):
        if other.version_code >= version.version_code or other.status is VersionStatus.REJECTED:
            continue
        latest = latest_run(uow, other.id)
        if latest is not None and latest.status is RunStatus.PASSED:
            best = other
    return best


def finish_validation(
    uow: UnitOfWork, clock: Clock, *, build_id: str, passed: bool, signer_sha256: str | None
) -> None:
    run = uow.runs.get_by_build(build_id)
    version = uow.versions.get_by_build(build_id)
    assert run is not None and version is not None
    uow.runs.save(
        replace(
            run, status=RunStatus.PASSED if passed else RunStatus.FAILED, finished_at=clock.now()
        )
    )
    uow.versions.save(replace(version, signer_sha256=signer_sha256, updated_at=clock.now()))


def fail_validation(uow: UnitOfWork, clock: Clock, *, build_id: str) -> None:
    run = uow.runs.get_by_build(build_id)
    if run is not None and run.status is RunStatus.RUNNING:
        uow.runs.save(replace(run, status=RunStatus.FAILED, finished_at=clock.now()))


# --- transitions --------------------------------------------------------------------------------


def _record(
    uow: UnitOfWork,
    clock: Clock,
    version: Version,
    action: str,
    before: VersionStatus | None,
    after: VersionStatus,
    actor: Actor,
    details: dict[str, Any] | None = None,
) -> None:
    outbox.emit(
        uow,
        clock,
        f"version.{TOPICS.get(action, action)}",
        tenant_id=version.tenant_id,
        subject_id=version.id,
        status=after.value,
        actor=f"{actor.kind}:{actor.id}",
        **(details or {}),
    )
    uow.events.add(
        VersionEvent(
            version_id=version.id,
            action=action,
            from_status=before.value if before else None,
            to_status=after.value,
            actor=f"{actor.kind}:{actor.id}",
            at=clock.now(),
            details=details or {},
        )
    )


def _require(actor: Actor, *roles: Role, action: str) -> None:
    if actor.kind != "user" or actor.role not in roles:
        raise errors.Forbidden(f"Only {' or '.join(r.value for r in roles)} users may {action}.")


def _may(actor: Actor, name: str, *, action: str) -> None:
    _require(actor, *ROLES[name], action=action)


def may(actor: Actor, name: str) -> bool:
    """Whether the actor's role allows action ``name`` at all (whatever the status)."""
    return actor.kind == "user" and actor.role in ROLES[name]


def allowed_actions(uow: UnitOfWork, actor: Actor, version: Version) -> frozenset[str]:
    """What the actor may do to the version now: its role (:data:`ROLES`), the version's
    status (:data:`FROM`) and the rules of each action (a draft leaves only once its
    validation passed; a rollout only grows; halt and resume alternate). The actions refuse
    anything this does not offer."""
    allowed = set()
    for name, statuses in FROM.items():
        if may(actor, name) and version.status in statuses:
            allowed.add(name)
    if "submit" in allowed:
        latest = latest_run(uow, version.id)
        if latest is None or latest.status is not RunStatus.PASSED:
            allowed.discard("submit")
    if version.rollout_halted:
        allowed.discard("halt")
    else:
        allowed.discard("resume")
    if version.rollout_percentage >= 100:
        allowed.discard("rollout")
    if may(actor, "resolve_issue"):
        allowed.add("resolve_issue")
    return frozenset(allowed)


def _move(
    uow: UnitOfWork,
    clock: Clock,
    actor: Actor,
    version: Version,
    action: str,
    allowed_from: tuple[VersionStatus, ...],
    to: VersionStatus,
    details: dict[str, Any] | None = None,
    **changes: Any,
) -> Version:
    if version.status not in allowed_from:
        raise VersionTransitionNotAllowed(
            f"Cannot {action} a version that is {version.status.value} (allowed from: "
            f"{', '.join(s.value for s in allowed_from)}).",
            status=version.status.value,
        )
    updated = replace(version, status=to, updated_at=clock.now(), **changes)
    uow.versions.save(updated)
    _record(uow, clock, version, action, version.status, to, actor, details)
    return updated


def submit(uow: UnitOfWork, clock: Clock, actor: Actor, *, version_id: str) -> Version:
    version = get(uow, actor, version_id=version_id)
    _may(actor, "submit", action="submit a version for review")
    latest = latest_run(uow, version.id)
    if version.status is VersionStatus.DRAFT and (
        latest is None or latest.status is not RunStatus.PASSED
    ):
        state = latest.status.value if latest else "missing"
        raise VersionTransitionNotAllowed(
            f"The version cannot leave draft: its validation run is {state}"
            + (" with blocking findings." if state == "failed" else ".")
        )
    return _move(
        uow, clock, actor, version, "submit", (VersionStatus.DRAFT,), VersionStatus.IN_REVIEW
    )


def approve(uow: UnitOfWork, clock: Clock, actor: Actor, *, version_id: str) -> Version:
    version = get(uow, actor, version_id=version_id)
    _may(actor, "approve", action="approve versions")
    return _move(
        uow, clock, actor, version, "approve", (VersionStatus.IN_REVIEW,), VersionStatus.APPROVED
    )


def reject(uow: UnitOfWork, clock: Clock, actor: Actor, *, version_id: str, reason: str) -> Version:
    version = get(uow, actor, version_id=version_id)
    _may(actor, "reject", action="reject versions")
    reason = _bounded(reason, MAX_REASON, "reason")
    if not reason:
        raise errors.InvalidField("A rejection needs a reason.", field="reason")
    return _move(
        uow,
        clock,
        actor,
        version,
        "reject",
        (VersionStatus.IN_REVIEW, VersionStatus.APPROVED),
        VersionStatus.REJECTED,
        {"reason": reason},
        rejection_reason=reason,
    )


def _clean_targets(countries: list[str], vehicle_contexts: list[str]) -> Targets:
    if len(countries) > MAX_TARGETS or len(vehicle_contexts) > MAX_TARGETS:
        raise errors.InvalidField(
            f"A release has at most {MAX_TARGETS} countries and vehicle contexts.", field="targets"
        )
    for context in vehicle_contexts:
        _bounded(context, MAX_CONTEXT, "vehicle_contexts")
    clean = []
    for code in countries:
        code = code.strip().upper()
        if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
            raise errors.InvalidField(
                f"{code!r} is not an ISO 3166-1 alpha-2 country code.", field="countries"
            )
        clean.append(code)
    contexts = [c.strip() for c in vehicle_contexts if c.strip()]
    if not clean:
        raise errors.InvalidField("A release needs at least one country.", field="countries")
    return Targets(
        countries=tuple(dict.fromkeys(clean)), vehicle_contexts=tuple(dict.fromkeys(contexts))
    )


def _check_percentage(value: int) -> int:
    if not 1 <= value <= 100:
        raise errors.InvalidField("rollout_percentage is 1 to 100.", field="rollout_percentage")
    return value


def release(
    uow: UnitOfWork,
    clock: Clock,
    actor: Actor,
    *,
    version_id: str,
    countries: list[str],
    vehicle_contexts: list[str],
    rollout_percentage: int = 100,
) -> Version:
    """Make an approved version live in targets; older live versions of the app give up the
    countries they share with it (when its vehicle contexts cover theirs), and a version left
    with no country is superseded."""
    version = get(uow, actor, version_id=version_id)
    _may(actor, "release", action="release versions")
    target = _clean_targets(countries, vehicle_contexts)
    updated = _move(
        uow,
        clock,
        actor,
        version,
        "release",
        (VersionStatus.APPROVED,),
        VersionStatus.LIVE,
        {
            "countries": list(target.countries),
            "vehicle_contexts": list(target.vehicle_contexts),
            "rollout_percentage": _check_percentage(rollout_percentage),
        },
        countries=target.countries,
        vehicle_contexts=target.vehicle_contexts,
        rollout_percentage=rollout_percentage,
        rollout_halted=False,
    )
    for other in uow.versions.for_app(version.app_id):
        if other.id == version.id or other.status is not VersionStatus.LIVE:
            continue
        covered = not target.vehicle_contexts or set(other.vehicle_contexts) <= set(
            target.vehicle_contexts
        )
        if not covered:
            continue
        remaining = tuple(c for c in other.countries if c not in target.countries)
        if remaining == other.countries:
            continue
        if remaining:
            uow.versions.save(replace(other, countries=remaining, updated_at=clock.now()))
            _record(
                uow,
                clock,
                other,
                "narrowed",
                other.status,
                other.status,
                actor,
                {"by_version": version.id, "countries": list(remaining)},
            )
        else:
            _move(
                uow,
                clock,
                actor,
                other,
                "supersede",
                (VersionStatus.LIVE,),
                VersionStatus.SUPERSEDED,
                {"by_version": version.id},
                countries=(),
            )
    return updated


def set_rollout(
    uow: UnitOfWork, clock: Clock, actor: Actor, *, version_id: str, percentage: int
) -> Version:
    version = get(uow, actor, version_id=version_id)
    _may(actor, "rollout", action="change rollouts")
    if version.status is not VersionStatus.LIVE:
        raise VersionTransitionNotAllowed("Only a live version has a rollout.")
    if _check_percentage(percentage) <= version.rollout_percentage:
        raise errors.InvalidField(
            f"A rollout only grows: {percentage}% is not above {version.rollout_percentage}%.",
            field="rollout_percentage",
        )
    return _move(
        uow,
        clock,
        actor,
        version,
        "rollout",
        (VersionStatus.LIVE,),
        VersionStatus.LIVE,
        {"from": version.rollout_percentage, "to": percentage},
        rollout_percentage=percentage,
    )


def halt(uow: UnitOfWork, clock: Clock, actor: Actor, *, version_id: str) -> Version:
    version = get(uow, actor, version_id=version_id)
    _may(actor, "halt", action="halt rollouts")
    if version.rollout_halted:
        raise VersionTransitionNotAllowed("The rollout is already halted.")
    return _move(
        uow,
        clock,
        actor,
        version,
        "halt",
        (VersionStatus.LIVE,),
        VersionStatus.LIVE,
        rollout_halted=True,
    )


def resume(uow: UnitOfWork, clock: Clock, actor: Actor, *, version_id: str) -> Version:
    version = get(uow, actor, version_id=version_id)
    _may(actor, "resume", action="resume rollouts")
    if not version.rollout_halted:
        raise VersionTransitionNotAllowed("The rollout is not halted.")
    return _move(
        uow,
        clock,
        actor,
        version,
        "resume",
        (VersionStatus.LIVE,),
        VersionStatus.LIVE,
        rollout_halted=False,
    )


def withdraw(
    uow: UnitOfWork, clock: Clock, actor: Actor, *, version_id: str, reason: str = ""
) -> Version:
    version = get(uow, actor, version_id=version_id)
    _may(actor, "withdraw", action="withdraw versions")
    reason = _bounded(reason, MAX_REASON, "reason")
    return _move(
        uow,
        clock,
        actor,
        version,
        "withdraw",
        (VersionStatus.LIVE,),
        VersionStatus.WITHDRAWN,
        {"reason": reason},
        countries=(),
        vehicle_contexts=(),
    )


def file_issue(
    uow: UnitOfWork, clock: Clock, actor: Actor, *, version_id: str, title: str, severity: str
) -> StoreIssue:
    version = get(uow, actor, version_id=version_id)
    _may(actor, "file_issue", action="file issues")
    if version.status is not VersionStatus.LIVE:
        raise VersionTransitionNotAllowed("Issues are filed against live versions.")
    title = _bounded(title, MAX_TITLE, "title")
    if not title:
        raise errors.InvalidField("An issue needs a title.", field="title")
    if severity not in ISSUE_SEVERITIES:
        raise errors.InvalidField(
            f"severity is one of {', '.join(ISSUE_SEVERITIES)}.", field="severity"
        )
    issue = StoreIssue(
        id=new_id("iss"),
        version_id=version.id,
        title=title.strip(),
        severity=severity,
        status=IssueStatus.OPEN,
        created_by=f"{actor.kind}:{actor.id}",
        created_at=clock.now(),
    )
    uow.issues.add(issue)
    _record(
        uow,
        clock,
        version,
        "issue_filed",
        version.status,
        version.status,
        actor,
        {"issue_id": issue.id, "title": issue.title, "severity": severity},
    )
    return issue


def resolve_issue(uow: UnitOfWork, clock: Clock, actor: Actor, *, issue_id: str) -> StoreIssue:
    issue = uow.issues.get(issue_id)
    version = uow.versions.get(issue.version_id) if issue is not None else None
    if (
        issue is None
        or version is None
        or (actor.role not in STAFF and version.tenant_id != actor.tenant_id)
    ):  # another tenant's issue answers as an unknown one: its version id is not named
        raise errors.NotFound(f"Issue {issue_id} not found.")
    _may(actor, "resolve_issue", action="resolve issues")
    if issue.status is IssueStatus.RESOLVED:
        raise VersionTransitionNotAllowed("The issue is already resolved.")
    resolved = replace(issue, status=IssueStatus.RESOLVED, resolved_at=clock.now())
    uow.issues.save(resolved)
    _record(
        uow,
        clock,
        version,
        "issue_resolved",
        version.status,
        version.status,
        actor,
        {"issue_id": issue.id},
    )
    return resolved
