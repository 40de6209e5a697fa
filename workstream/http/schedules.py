"""`/schedules`: the periodic jobs (docs/scheduling.md), served from the scheduler's view
(`ScheduleProvider`) that the server hands to the app."""

from __future__ import annotations

from urllib.parse import quote

import falcon

from workstream.errors import NotFound
from workstream.http.body import read_no_input
from workstream.http.render import send_json
from workstream.jobs.schedules import ScheduleProvider, ScheduleState
from workstream.units import shorten


class NoSchedules:
    """The view of a server without a scheduler (an app built without one): no schedule."""

    def schedules(self) -> list[ScheduleState]:
        return []

    def run_schedule(self, name: str) -> str:
        raise NotFound(f"no schedule named {shorten(name)!r} (known: none)")


class SchedulesResource:
    """`GET /schedules`: every schedule with its type, cron, timezone, next and last run."""

    def __init__(self, provider: ScheduleProvider) -> None:
        self._provider = provider

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, {"schedules": [state.to_public() for state in self._provider.schedules()]})


class ScheduleRunResource:
    """`POST /schedules/{name}/run`: one job of the schedule now (a manual run, which is
    not a slot: the schedule's slots fire as they would have)."""

    def __init__(self, provider: ScheduleProvider) -> None:
        self._provider = provider

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        read_no_input(req)
        job_id = self._provider.run_schedule(name)
        resp.set_header("Location", f"/jobs/{quote(job_id, safe='')}")
        send_json(resp, {"schedule": name, "job_id": job_id}, 201)
