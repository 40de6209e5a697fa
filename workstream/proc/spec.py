"""What a worker process is told when it starts: which handlers and middleware to import,
the built-ins' options, how many threads, how to log.

It travels as the first frame on the socket, not on the command line, so that secrets
(SMTP_PASSWORD) never show in `ps`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from workstream.handlers.builtin import EmailOptions, WebhookOptions


@dataclass(frozen=True)
class ChildSpec:
    name: str  # the supervising Worker's name: worker-1, ... (slots are worker-1.0, ...)
    threads: int
    job_handlers: tuple[str, ...] = ()
    worker_middleware: tuple[str, ...] = ()
    email: EmailOptions = field(default_factory=EmailOptions)
    webhook: WebhookOptions = field(default_factory=WebhookOptions)
    log_level: str = "info"
    log_format: str = "json"

    def to_wire(self) -> dict[str, Any]:
        return {
            "op": "spec",
            "name": self.name,
            "threads": self.threads,
            "job_handlers": list(self.job_handlers),
            "worker_middleware": list(self.worker_middleware),
            "email": dataclasses.asdict(self.email),
            "webhook": {key: list(value) for key, value in vars(self.webhook).items()},
            "log_level": self.log_level,
            "log_format": self.log_format,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ChildSpec:
        webhook = {key: tuple(value) for key, value in data["webhook"].items()}
        return cls(
            name=data["name"],
            threads=int(data["threads"]),
            job_handlers=tuple(data["job_handlers"]),
            worker_middleware=tuple(data["worker_middleware"]),
            email=EmailOptions(**data["email"]),
            webhook=WebhookOptions(**webhook),
            log_level=data["log_level"],
            log_format=data["log_format"],
        )

    def replace(self, **changes: Any) -> ChildSpec:
        return dataclasses.replace(self, **changes)
