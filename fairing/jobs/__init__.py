"""The jobs fairing started: what they carry, listing them, re-attaching to them, and logs that outlive them.

Every job records who and what started it (:class:`JobOrigin`: fairing's version, the
user, the payload kind and its source). On Kubernetes that goes on the workload and its
pods as labels and annotations; for every job a small *record* is also kept under the
user cache dir (``<cache>/fairing/jobs/<name>/record.json``, next to a local job's log,
result and exit code) so that a later process — another terminal, a restarted kernel —
can find it again::

    fairing.jobs()                      # JobInfo rows: local records, plus the cluster's jobs
    handle = fairing.attach("fairing-1201-213500-ab12c")
    handle.result()                     # the value, or the job's exception re-raised

The record says how to read the result (``result``: the channel and a *reference* to the
result's HMAC key — the Secret ``<job>-result-key`` on Kubernetes, the owner-only key file
in the job directory locally — never the key itself, and never in a label); an attached
handle reads the key from there.

Logs kept with ``keep_logs=True`` are written to ``<cache>/fairing/logs/<name>.log``
before the job is deleted; :func:`saved_log` finds them.

``fairing.jobs`` is this module, and calling it calls :func:`jobs`: importing a submodule
sets the package's attribute of that name, so a plain ``fairing.jobs`` function would be
replaced by the module as soon as anything imported ``fairing.jobs``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .attaching import attach
from .listing import MANAGED_SELECTOR, JobInfo, _workload_phase, jobs  # noqa: F401  (kept importable from here)
from .logs import delete, finish, log_lines, save_logs, saved_log
from .origin import JobOrigin, origin_of, stamped
from .records import forget, jobs_dir, logs_dir, remember

__all__ = [
    "JobOrigin", "JobInfo", "jobs", "attach", "delete", "save_logs", "saved_log", "origin_of", "stamped",
    "remember", "forget", "finish", "log_lines", "jobs_dir", "logs_dir",
]


class _CallableModule(types.ModuleType):
    def __call__(self, **options: Any) -> list[JobInfo]:
        return jobs(**options)


sys.modules[__name__].__class__ = _CallableModule
