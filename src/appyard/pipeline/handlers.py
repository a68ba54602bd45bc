"""Job handlers by kind: the worker looks a claimed job's handler up here by its name. A new
kind of job (sending mail, delivering a webhook, applying retention) is a new entry, not a
new branch in the worker."""

from __future__ import annotations

from collections.abc import Callable

from appyard.core import jobs
from appyard.core.context import Services
from appyard.core.models import Job
from appyard.pipeline.outgoing import deliver_webhook, send_build_mail
from appyard.pipeline.process import inspect_build, keep_build, process_build, validate_version
from appyard.pipeline.upkeep import apply_retention

Handler = Callable[[Services, Job, str], None]  # (services, claimed job, lease owner)

HANDLERS: dict[str, Handler] = {
    jobs.PROCESS_BUILD: process_build,
    jobs.INSPECT_BUILD: inspect_build,
    jobs.VALIDATE_VERSION: validate_version,
    jobs.KEEP_BUILD: keep_build,
    jobs.NOTIFY_BUILD: send_build_mail,
    jobs.DELIVER_WEBHOOK: deliver_webhook,
    jobs.APPLY_RETENTION: apply_retention,
}
