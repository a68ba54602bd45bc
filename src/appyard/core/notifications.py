"""Notifications: the people of a tenant who hear of its builds by email, and what they hear.

A member is a collaborator (of one app, or of every app of the tenant) or an employee (a
tester or user, in groups). A build's uploader says whom to tell (:class:`Notify`, kept in the
build's metadata): the collaborators, and/or the employees, limited by group filters (each
filter is a list of groups a member must all be in; a member matching any filter is told).
When the build is processed (the ``build.processed`` event, or ``build.failed`` when asked),
a ``mail.build`` job sends one message per person, in their language (the uploader's choice,
else the member's own, else English), never inside the upload request. Each delivery is
recorded; without a mail server they are recorded as skipped.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from appyard import errors
from appyard.core import apps, jobs, telemetry
from appyard.core.ids import new_id
from appyard.core.models import (
    App,
    Build,
    BuildStatus,
    DeliveryStatus,
    Event,
    MailDelivery,
    Member,
    MemberRole,
)
from appyard.core.ports import Clock, MailMessage, UnitOfWork

LANGUAGES = ("es", "en", "fr", "ge", "it", "zh", "pt", "ru")  # the distribution API's codes
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._\-]{0,63}$")
MAX_GROUPS = 10  # filters per build, and groups per filter
MAX_MESSAGE = 2000
MAIL_ATTEMPTS = 6


@dataclass(frozen=True)
class Notify:
    """Whom a build's uploader asked to tell, and how."""

    collaborators: bool = False
    employees: bool = False
    message: str = ""
    language: str | None = None
    groups: tuple[tuple[str, ...], ...] = ()  # OR of ANDs
    on_error: bool = False  # also when the build fails

    def to_meta(self) -> dict[str, Any]:
        return {
            "collaborators": self.collaborators,
            "employees": self.employees,
            "message": self.message,
            "language": self.language,
            "groups": [list(g) for g in self.groups],
            "onError": self.on_error,
        }

    @classmethod
    def from_meta(cls, value: Any) -> Notify | None:
        if not isinstance(value, dict):
            return None
        return cls(
            collaborators=bool(value.get("collaborators")),
            employees=bool(value.get("employees")),
            message=str(value.get("message") or ""),
            language=value.get("language") or None,
            groups=tuple(tuple(str(g) for g in group) for group in value.get("groups") or ()),
            on_error=bool(value.get("onError")),
        )


def check_notify(notify: Notify) -> Notify:
    """Bound and validate what an uploader asked for."""
    if notify.language is not None and notify.language not in LANGUAGES:
        raise errors.InvalidField(
            f"notifyLanguage must be one of {', '.join(LANGUAGES)}.", field="notifyLanguage"
        )
    if len(notify.message) > MAX_MESSAGE:
        raise errors.InvalidField(
            f"notifyMessage is at most {MAX_MESSAGE} characters.", field="notifyMessage"
        )
    if len(notify.groups) > MAX_GROUPS or any(len(g) > MAX_GROUPS for g in notify.groups):
        raise errors.InvalidField(
            f"filter has at most {MAX_GROUPS} groups of {MAX_GROUPS}.", field="filter"
        )
    for group in (g for clause in notify.groups for g in clause):
        if not _GROUP.match(group):
            raise errors.InvalidField(f"filter: {group!r} is not a group name.", field="filter")
    return notify


# --- members --------------------------------------------------------------------------------------


def add_member(
    uow: UnitOfWork,
    clock: Clock,
    *,
    tenant_id: str,
    email: str,
    role: MemberRole,
    groups: tuple[str, ...] = (),
    app_slug: str | None = None,
    language: str = "en",
    name: str = "",
) -> Member:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise errors.InvalidField(f"{email!r} is not an email address.", field="email")
    if language not in LANGUAGES:
        raise errors.InvalidField(
            f"language must be one of {', '.join(LANGUAGES)}.", field="language"
        )
    clean = tuple(dict.fromkeys(g.strip() for g in groups if g.strip()))
    for group in clean:
        if not _GROUP.match(group):
            raise errors.InvalidField(f"{group!r} is not a group name.", field="groups")
    if role is MemberRole.COLLABORATOR and clean:
        raise errors.InvalidField("Groups are for employees.", field="groups")
    if role is MemberRole.EMPLOYEE and app_slug:
        raise errors.InvalidField("Employees belong to the tenant, not one app.", field="app")
    app = apps.by_ref(uow, tenant_id=tenant_id, ref=app_slug) if app_slug else None
    app_id = app.id if app else None
    for other in uow.members.list(tenant_id):
        if (other.email, other.role, other.app_id) == (email, role, app_id):
            raise errors.Conflict(f"{email} is already a {role.value} there.")
    member = Member(
        id=new_id("mb"),
        tenant_id=tenant_id,
        email=email,
        name=name.strip()[:255] or email,
        role=role,
        groups=clean,
        language=language,
        created_at=clock.now(),
        app_id=app_id,
    )
    uow.members.add(member)
    return member


def list_members(uow: UnitOfWork, *, tenant_id: str) -> list[Member]:
    return uow.members.list(tenant_id)


def remove_member(uow: UnitOfWork, *, tenant_id: str, member_id: str) -> None:
    member = uow.members.get(member_id)
    if member is None or member.tenant_id != tenant_id:
        raise errors.NotFound(f"No member {member_id!r}.")
    uow.members.delete(member_id)


def recipients(members: list[Member], *, app_id: str | None, notify: Notify) -> list[Member]:
    """Whom to tell, once each: collaborators of the app and of the whole tenant; employees
    in any of the group filters (all employees when there is none)."""
    chosen: dict[str, Member] = {}
    for member in members:
        if member.role is MemberRole.COLLABORATOR:
            wanted = notify.collaborators and member.app_id in (None, app_id)
        else:
            wanted = notify.employees and (
                not notify.groups or any(set(g) <= set(member.groups) for g in notify.groups)
            )
        if wanted:
            chosen.setdefault(member.email, member)
    return list(chosen.values())


# --- the messages ---------------------------------------------------------------------------------

_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "ready": "New build of {app}: {version}",
        "failed": "A build of {app} failed: {version}",
        "intro_ready": "A new build of {app} is ready.",
        "intro_failed": "A build of {app} could not be processed.",
        "version": "Version",
        "changelog": "What is new",
        "message": "Message",
        "reason": "Reason",
        "open": "Open the build",
    },
    "es": {
        "ready": "Nueva versión de {app}: {version}",
        "failed": "Falló una versión de {app}: {version}",
        "intro_ready": "Hay una nueva versión de {app} lista.",
        "intro_failed": "No se pudo procesar una versión de {app}.",
        "version": "Versión",
        "changelog": "Novedades",
        "message": "Mensaje",
        "reason": "Motivo",
        "open": "Abrir la versión",
    },
    "fr": {
        "ready": "Nouvelle version de {app} : {version}",
        "failed": "Échec d'une version de {app} : {version}",
        "intro_ready": "Une nouvelle version de {app} est prête.",
        "intro_failed": "Une version de {app} n'a pas pu être traitée.",
        "version": "Version",
        "changelog": "Nouveautés",
        "message": "Message",
        "reason": "Raison",
        "open": "Ouvrir la version",
    },
    "ge": {
        "ready": "Neuer Build von {app}: {version}",
        "failed": "Ein Build von {app} ist fehlgeschlagen: {version}",
        "intro_ready": "Ein neuer Build von {app} ist bereit.",
        "intro_failed": "Ein Build von {app} konnte nicht verarbeitet werden.",
        "version": "Version",
        "changelog": "Neuerungen",
        "message": "Nachricht",
        "reason": "Grund",
        "open": "Build öffnen",
    },
    "it": {
        "ready": "Nuova build di {app}: {version}",
        "failed": "Una build di {app} non è riuscita: {version}",
        "intro_ready": "Una nuova build di {app} è pronta.",
        "intro_failed": "Non è stato possibile elaborare una build di {app}.",
        "version": "Versione",
        "changelog": "Novità",
        "message": "Messaggio",
        "reason": "Motivo",
        "open": "Apri la build",
    },
    "zh": {
        "ready": "{app} 的新版本：{version}",  # noqa: RUF001 (Chinese punctuation)
        "failed": "{app} 的一个版本处理失败：{version}",  # noqa: RUF001
        "intro_ready": "{app} 的新版本已就绪。",
        "intro_failed": "{app} 的一个版本无法处理。",
        "version": "版本",
        "changelog": "更新内容",
        "message": "留言",
        "reason": "原因",
        "open": "打开此版本",
    },
    "pt": {
        "ready": "Nova versão de {app}: {version}",
        "failed": "Falha numa versão de {app}: {version}",
        "intro_ready": "Uma nova versão de {app} está pronta.",
        "intro_failed": "Não foi possível processar uma versão de {app}.",
        "version": "Versão",
        "changelog": "Novidades",
        "message": "Mensagem",
        "reason": "Motivo",
        "open": "Abrir a versão",
    },
    "ru": {
        "ready": "Новая сборка {app}: {version}",
        "failed": "Сборка {app} не обработана: {version}",
        "intro_ready": "Новая сборка {app} готова.",
        "intro_failed": "Сборку {app} не удалось обработать.",
        "version": "Версия",
        "changelog": "Что нового",
        "message": "Сообщение",
        "reason": "Причина",
        "open": "Открыть сборку",
    },
}


def compose(
    *,
    to: str,
    language: str,
    app: App | None,
    build: Build,
    notify: Notify,
    link: str,
) -> MailMessage:
    """The message about ``build`` for one person, in ``language`` (English when unknown):
    app name, version, changelog, the uploader's message and a link to the build; as plain
    text and as HTML."""
    words = _TEXT.get(language, _TEXT["en"])
    name = app.name if app else (build.identifier or build.file_name)
    version = build.version_name or build.meta.get("versionName") or build.version_code or "?"
    if build.version_code and build.version_code != version:
        version = f"{version} ({build.version_code})"
    failed = build.status is BuildStatus.FAILED
    subject = words["failed" if failed else "ready"].format(app=name, version=version)
    rows: list[tuple[str, str]] = [(words["version"], version)]
    changelog = str(build.meta.get("changelog") or "")
    if changelog:
        rows.append((words["changelog"], changelog))
    if notify.message:
        rows.append((words["message"], notify.message))
    if failed and build.error_message:
        rows.append((words["reason"], build.error_message))
    intro = words["intro_failed" if failed else "intro_ready"].format(app=name)
    text = "\n\n".join(
        [intro, *(f"{label}:\n{value}" for label, value in rows), f"{words['open']}: {link}"]
    )
    e = html.escape
    body = "".join(
        f'<h3 style="margin:16px 0 4px">{e(label)}</h3><p style="white-space:pre-wrap;'
        f'margin:0">{e(value)}</p>'
        for label, value in rows
    )
    page = (
        f'<!doctype html><html lang="{e(language)}"><body style="font-family:system-ui,sans-'
        f'serif;color:#1f2328;max-width:560px"><p>{e(intro)}</p>{body}<p style="margin-top:'
        f'24px"><a href="{e(link)}" style="background:#0b5cad;color:#fff;padding:10px 16px;'
        f'border-radius:6px;text-decoration:none">{e(words["open"])}</a></p></body></html>'
    )
    return MailMessage(to=to, subject=subject, text=text, html=page)


# --- the job --------------------------------------------------------------------------------------


def on_build_event(uow: UnitOfWork, clock: Clock, event: Event) -> None:
    """An outbox consumer: a processed (or failed, when asked) build whose uploader asked to
    notify people gets a ``mail.build`` job."""
    build = uow.builds.get(event.subject_id)
    if build is None or build.tenant_id != event.tenant_id:
        return
    notify = Notify.from_meta(build.meta.get("notify"))
    if notify is None or not (notify.collaborators or notify.employees):
        return
    if event.topic == "build.failed" and not notify.on_error:
        return
    jobs.create(
        uow,
        clock,
        tenant_id=build.tenant_id,
        kind=jobs.NOTIFY_BUILD,
        payload={"build_id": build.id, "topic": event.topic},
        max_attempts=MAIL_ATTEMPTS,
    )


@dataclass(frozen=True)
class Outgoing:
    """What a ``mail.build`` job still has to send."""

    build: Build
    app: App | None
    notify: Notify
    topic: str
    messages: list[tuple[Member, str]]  # (recipient, language) not sent yet


def outgoing(uow: UnitOfWork, *, build_id: str, topic: str) -> Outgoing | None:
    build = uow.builds.get(build_id)
    if build is None:
        return None
    notify = Notify.from_meta(build.meta.get("notify")) or Notify()
    done = {
        d.recipient
        for d in uow.mail_deliveries.for_build(build_id)
        if d.topic == topic and d.status is not DeliveryStatus.FAILED
    }
    people = recipients(uow.members.list(build.tenant_id), app_id=build.app_id, notify=notify)
    return Outgoing(
        build=build,
        app=uow.apps.get(build.app_id) if build.app_id else None,
        notify=notify,
        topic=topic,
        messages=[(m, notify.language or m.language) for m in people if m.email not in done],
    )


def record(
    uow: UnitOfWork,
    clock: Clock,
    *,
    build: Build,
    topic: str,
    recipient: str,
    language: str,
    status: DeliveryStatus,
    attempts: int,
    error: str | None = None,
) -> MailDelivery:
    delivery = MailDelivery(
        id=new_id("ml"),
        tenant_id=build.tenant_id,
        build_id=build.id,
        topic=topic,
        recipient=recipient,
        language=language,
        status=status,
        attempts=attempts,
        at=clock.now(),
        error=error[:500] if error else None,
    )
    uow.mail_deliveries.add(delivery)
    telemetry.count(uow, "mail.delivery", status=status.value)
    return delivery


def deliveries(uow: UnitOfWork, *, tenant_id: str, build_id: str) -> list[MailDelivery]:
    return [d for d in uow.mail_deliveries.for_build(build_id) if d.tenant_id == tenant_id]
