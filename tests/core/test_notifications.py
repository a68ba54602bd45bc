"""Notification email, end to end on a real SMTP server on loopback (aiosmtpd): the right
people for collaborators and for AND/OR group filters, their language, the uploader's message,
nothing for a failed build unless asked, retries with backoff when the server refuses, and
"skipped" records without a server. Sent by the ``mail.build`` job after the build's event,
never inside the upload."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appyard.backends.mail.smtp import SmtpMailer
from appyard.core import apps, notifications, submissions
from appyard.core.context import Services
from appyard.core.models import (
    App,
    Build,
    BuildStatus,
    ConfigVersion,
    DeliveryStatus,
    MemberRole,
    Platform,
    Stage,
)
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import FIXTURES, FakeClock, TenantKey
from tests.going_out import SmtpSink

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"


@pytest.fixture
def svc(runtime: Runtime, smtp: SmtpSink) -> Services:
    return dataclasses.replace(
        runtime.services, mailer=SmtpMailer(smtp.url, sender="appyard <ci@appyard.test>")
    )


@pytest.fixture
def people(runtime: Runtime, tenant: TenantKey) -> Iterator[None]:
    svc = runtime.services
    with svc.transaction() as uow:
        app = apps.named(uow, svc.clock, tenant_id=tenant.tenant_id, slug="shop", create=True)
        apps.named(uow, svc.clock, tenant_id=tenant.tenant_id, slug="other", create=True)
        add = notifications.add_member
        add(uow, svc.clock, tenant_id=tenant.tenant_id, email="lead@x.io",
            role=MemberRole.COLLABORATOR)  # fmt: skip
        add(uow, svc.clock, tenant_id=tenant.tenant_id, email="dev@x.io",
            role=MemberRole.COLLABORATOR, app_slug=app.slug, language="es")  # fmt: skip
        add(uow, svc.clock, tenant_id=tenant.tenant_id, email="elsewhere@x.io",
            role=MemberRole.COLLABORATOR, app_slug="other")  # fmt: skip
        add(uow, svc.clock, tenant_id=tenant.tenant_id, email="both@x.io",
            role=MemberRole.EMPLOYEE, groups=("group1", "group2"), language="fr")  # fmt: skip
        add(uow, svc.clock, tenant_id=tenant.tenant_id, email="one@x.io",
            role=MemberRole.EMPLOYEE, groups=("group1",))  # fmt: skip
        add(uow, svc.clock, tenant_id=tenant.tenant_id, email="three@x.io",
            role=MemberRole.EMPLOYEE, groups=("group3", "qa"), language="ru")  # fmt: skip
        add(uow, svc.clock, tenant_id=tenant.tenant_id, email="none@x.io",
            role=MemberRole.EMPLOYEE)  # fmt: skip
    yield


def submit(
    svc: Services,
    tenant: TenantKey,
    tmp: Path,
    notify: notifications.Notify,
    apk: Path = RELEASE_APK,
) -> str:
    spooled = tmp / f"spool-{len(list(tmp.iterdir()))}.apk"
    spooled.write_bytes(apk.read_bytes())
    with svc.transaction() as uow:
        app = apps.by_ref(uow, tenant_id=tenant.tenant_id, ref="shop")
        build = submissions.receive(
            svc,
            uow,
            tenant.actor,
            app=app,
            path=spooled,
            file_name="app.apk",
            source="test",
            meta={
                "changelog": "Fixed crash on login screen",
                "versionName": "v2.4.0-rc1",
                "notify": notify.to_meta(),
            },
        )
    return build.id


def run_all(svc: Services) -> None:
    worker = Worker(svc)
    while worker.run_once("w"):
        pass


def test_collaborators_of_the_app_and_the_tenant_are_told_once_each(
    svc: Services,
    tenant: TenantKey,
    people: None,
    smtp: SmtpSink,
    tmp_path: Path,
) -> None:
    submit(svc, tenant, tmp_path, notifications.Notify(collaborators=True, message="QA please"))
    assert smtp.received == []  # nothing inside the upload: the job sends after processing
    run_all(svc)
    mails = smtp.by_recipient()
    assert sorted(mails) == ["dev@x.io", "lead@x.io"]
    lead = mails["lead@x.io"]
    assert lead.subject == "New build of shop: 1.0.0 (1)"
    text = lead.part("plain")
    assert "Fixed crash on login screen" in text and "QA please" in text
    assert "/builds/" in text
    html = lead.part("html")
    assert "QA please" in html and "<a href=" in html
    assert mails["dev@x.io"].subject.startswith("Nueva versión de shop")  # their language


@pytest.mark.parametrize(
    ("groups", "told"),
    [
        ((("group1", "group2"), ("group3",)), ["both@x.io", "three@x.io"]),
        ((("group1",),), ["both@x.io", "one@x.io"]),
        ((("group1", "qa"),), []),
        ((), ["both@x.io", "none@x.io", "one@x.io", "three@x.io"]),
    ],
)
def test_employees_are_chosen_by_and_within_or_across_filters(
    svc: Services,
    tenant: TenantKey,
    people: None,
    smtp: SmtpSink,
    tmp_path: Path,
    groups: tuple[tuple[str, ...], ...],
    told: list[str],
) -> None:
    submit(svc, tenant, tmp_path, notifications.Notify(employees=True, groups=groups))
    run_all(svc)
    assert sorted(smtp.by_recipient()) == told


def test_messages_are_in_the_eight_languages_else_english() -> None:
    for language, start in (("ge", "Neuer Build"), ("zh", "shop 的新版本"), ("pt", "Nova")):
        assert notifications.compose(
            to="a@b.c",
            language=language,
            app=_app("shop"),
            build=_build(),
            notify=notifications.Notify(),
            link="http://x/builds/1",
        ).subject.startswith(start)
    assert notifications.compose(
        to="a@b.c", language="tlh", app=_app("shop"), build=_build(),
        notify=notifications.Notify(), link="http://x",
    ).subject.startswith("New build")  # fmt: skip


def _app(name: str) -> App:
    return App("app_1", "tn_1", None, None, name, datetime.now(UTC), slug=name)


def _build() -> Build:
    now = datetime.now(UTC)
    return Build(
        id="bd_1", tenant_id="tn_1", number=1, platform=Platform.ANDROID,
        config_version=ConfigVersion.PRODUCTION, file_name="a.apk", source_key="k",
        status=BuildStatus.COMPLETED, progress=Stage.DONE, created_at=now, updated_at=now,
        version_name="2.0", version_code="20",
    )  # fmt: skip


def test_a_failed_build_mails_nobody_unless_asked(
    svc: Services,
    tenant: TenantKey,
    people: None,
    smtp: SmtpSink,
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.apk"
    broken.write_bytes(RELEASE_APK.read_bytes())
    quiet = submit(svc, tenant, tmp_path, notifications.Notify(collaborators=True), broken)
    with svc.uow() as uow:  # the job will fail: its input is gone
        build = uow.builds.get(quiet)
    assert build is not None
    svc.store.delete(build.source_key)
    run_all(svc)
    assert smtp.received == []
    loud = submit(
        svc, tenant, tmp_path, notifications.Notify(collaborators=True, on_error=True), broken
    )
    with svc.uow() as uow:
        build = uow.builds.get(loud)
    assert build is not None
    svc.store.delete(build.source_key)
    run_all(svc)
    subjects = {m.subject for m in smtp.received}
    assert subjects == {"A build of shop failed: 1.0.0 (1)", "Falló una versión de shop: 1.0.0 (1)"}


def test_a_refusing_server_is_tried_again_with_backoff(
    svc: Services,
    tenant: TenantKey,
    people: None,
    smtp: SmtpSink,
    tmp_path: Path,
    clock: FakeClock,
) -> None:
    smtp.refuse_next = 1
    build_id = submit(svc, tenant, tmp_path, notifications.Notify(collaborators=True))
    run_all(svc)
    assert len(smtp.received) == 1  # one of the two went through
    with svc.uow() as uow:
        first = uow.mail_deliveries.for_build(build_id)
    assert sorted(d.status for d in first) == [DeliveryStatus.FAILED, DeliveryStatus.SENT]
    assert not Worker(svc).run_once("w")  # the retry waits for its backoff
    clock.advance(minutes=1, seconds=1)
    run_all(svc)
    assert sorted(smtp.by_recipient()) == ["dev@x.io", "lead@x.io"]  # the other, once
    with svc.uow() as uow:
        sent = [
            d for d in uow.mail_deliveries.for_build(build_id) if d.status is DeliveryStatus.SENT
        ]
    assert len(sent) == 2


def test_without_a_mail_server_deliveries_are_recorded_as_skipped(
    runtime: Runtime, tenant: TenantKey, people: None, tmp_path: Path
) -> None:
    svc = runtime.services
    assert not svc.mailer.configured
    build_id = submit(svc, tenant, tmp_path, notifications.Notify(collaborators=True))
    run_all(svc)
    with svc.uow() as uow:
        found = uow.mail_deliveries.for_build(build_id)
        build = uow.builds.get(build_id)
    assert {d.recipient: d.status for d in found} == {
        "dev@x.io": DeliveryStatus.SKIPPED,
        "lead@x.io": DeliveryStatus.SKIPPED,
    }
    assert build is not None and build.status.value == "completed"  # the upload still works


def test_member_rules(runtime: Runtime, tenant: TenantKey) -> None:
    from appyard import errors

    svc = runtime.services
    with svc.transaction() as uow:
        add = notifications.add_member
        with pytest.raises(errors.InvalidField):
            add(uow, svc.clock, tenant_id=tenant.tenant_id, email="nope", role=MemberRole.EMPLOYEE)
        with pytest.raises(errors.InvalidField):
            add(uow, svc.clock, tenant_id=tenant.tenant_id, email="a@b.c",
                role=MemberRole.EMPLOYEE, language="xx")  # fmt: skip
        with pytest.raises(errors.InvalidField):
            add(uow, svc.clock, tenant_id=tenant.tenant_id, email="a@b.c",
                role=MemberRole.COLLABORATOR, groups=("g",))  # fmt: skip
        add(uow, svc.clock, tenant_id=tenant.tenant_id, email="A@B.c", role=MemberRole.EMPLOYEE)
        with pytest.raises(errors.Conflict):
            add(uow, svc.clock, tenant_id=tenant.tenant_id, email="a@b.c",
                role=MemberRole.EMPLOYEE)  # fmt: skip
