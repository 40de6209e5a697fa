"""The extension API: what a module named in EXTENSIONS may use, and nothing more.

An extension is a module with a function `setup(context: ExtensionContext)` that returns
the actors it started (a list of `pykka.ActorRef`, possibly empty). The server calls each
setup in the order of EXTENSIONS, once its own actors run and before its HTTP port opens;
at shutdown it stops them in reverse order once running jobs have drained, before its own
actors stop. A module that does not import, or a setup that raises, stops start-up with a
message naming the module (exit status 2).

What a setup may use (see docs/architecture.md, "Extending WorkStream"):
- `subscribe(ref, kinds)`: committed job events, delivered to the actor as `JobEvents`
  messages (off the Registry's thread: the actor handles them on its own);
- `jobs`: the same bounded `JobService` the HTTP layer uses (submit, get, list, ...);
- `every(seconds, ref, message)` and `at(when, ref, message)`: ticks and one-shot alarms
  from the server's one Ticker, delivered as `tell`s (actors never sleep);
- `settings(*rows)`: its own section of the config file (`[name]`) and the environment
  (`NAME_KEY`), with the same converters, validation and exit-2 errors as the core's;
  `section()`: that table as it is, for keys of its own (named sub-tables);
- `metrics`: the app's prometheus `CollectorRegistry` (samples get the `node` label);
- `add_route(path, resource)`: a Falcon resource under `/ext/<name>`, behind the same
  authentication, request ids and JSON errors as the API;
- `add_middleware(middleware)`: worker middleware (`workstream.Middleware`), run around
  every handler call after the WORKER_MIDDLEWARE entries.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import pykka

from workstream.actors.events import EventBus
from workstream.actors.ticker import Ticker
from workstream.config import CORE_SECTIONS, Settings
from workstream.converters import Setting, convert_setting
from workstream.errors import ConfigError
from workstream.handlers import import_module_for
from workstream.handlers.middleware import Middleware, MiddlewareChain
from workstream.jobs.service import JobService

ROUTE_ROOT = "/ext"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


class ExtensionContext:
    """Handed to one extension's `setup`: its name, and the parts of the running server
    it may use."""

    def __init__(
        self,
        name: str,
        *,
        server_settings: Settings,
        jobs: JobService,
        events: EventBus,
        ticker: Ticker,
        middleware: MiddlewareChain,
        metrics: Any,  # prometheus_client.CollectorRegistry
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self.prefix = f"{ROUTE_ROOT}/{name}"
        self.server_settings = server_settings
        self.jobs = jobs
        self.metrics = metrics
        self.clock = clock
        self.log = logging.getLogger(f"workstream.ext.{name}")
        self.routes: list[tuple[str, object]] = []
        self.section_read = False
        self._events = events
        self._ticker = ticker
        self._middleware = middleware

    def subscribe(self, ref: pykka.ActorRef[Any], kinds: Collection[str] | None = None) -> None:
        """Tell `ref` a `JobEvents` message with every committed batch of job events (only
        `kinds`, from `workstream.jobs.events`, if given)."""
        self._events.subscribe_actor(ref, kinds)

    def every(self, seconds: float, ref: pykka.ActorRef[Any], message: Any) -> None:
        """Tell `ref` the `message` every `seconds` (the first time one period from now)."""
        self._ticker.every(seconds, lambda: ref.tell(message))

    def at(self, when: float, ref: pykka.ActorRef[Any], message: Any) -> None:
        """Tell `ref` the `message` once, at Unix time `when` (at once if it has passed)."""
        self._ticker.at(when, lambda: ref.tell(message))

    def add_middleware(self, middleware: Middleware) -> None:
        """Run `middleware` around every handler call. Only with WORKER_PROCESSES=0: in
        process mode handlers run in worker processes, which cannot receive an object made
        here; there, name the middleware in WORKER_MIDDLEWARE (each child imports it)."""
        if self.server_settings.worker_processes > 0:
            raise ConfigError(
                "add_middleware needs WORKER_PROCESSES=0: with worker processes, handlers run "
                "in processes that cannot receive this object; name the middleware in "
                "WORKER_MIDDLEWARE instead (module:attribute), and each process imports it"
            )
        self._middleware.add(middleware)

    def add_route(self, path: str, resource: object) -> str:
        """Serve a Falcon resource at `/ext/<name><path>`; returns the full path."""
        if path and not path.startswith("/"):
            raise ValueError(f"route {path!r} must start with '/'")
        full = self.prefix + path.rstrip("/") if path != "/" else self.prefix
        self.routes.append((full, resource))
        return full

    def section(self) -> Mapping[str, Any]:
        """This extension's `[name]` table of the config file as it is, for an extension
        whose keys are its own (named sub-tables, such as `[schedules.nightly]`); it checks
        them itself. Marks the section read, as `settings` does."""
        self.section_read = True
        return self.server_settings.config_tables.get(self.name, {})

    def settings(self, *rows: Setting) -> dict[str, Any]:
        """This extension's settings: defaults < its `[name]` table in the config file <
        the environment (`NAME_KEY`). Raises ConfigError (exit 2) naming the setting, as
        the core's settings do; an unknown key in the table is refused."""
        server = self.server_settings
        table: Mapping[str, Any] = server.config_tables.get(self.name, {})
        known = {row.name for row in rows}
        unknown = sorted(key for key in table if key not in known)
        if unknown:
            raise ConfigError(
                f"config file {server.config_path}: unknown setting {unknown[0]!r} in "
                f"[{self.name}] (known: {', '.join(sorted(known)) or 'none'})"
            )
        self.section_read = True
        values: dict[str, Any] = {}
        for row in rows:
            env = f"{self.name}_{row.name}".upper()
            if env in server.environment:
                raw, source = server.environment[env], "environment"
            elif row.name in table:
                raw, source = table[row.name], f"in {server.config_path} [{self.name}]"
            else:
                values[row.name] = row.default
                continue
            values[row.name] = convert_setting(row, raw, source, env)
        return values


class LoadedExtension:
    """One extension module, its context, and the actors its setup returned."""

    def __init__(self, module_name: str, setup: Callable[[ExtensionContext], Any]) -> None:
        self.module_name = module_name
        self.name = extension_name(module_name)
        self.setup = setup
        self.actors: list[pykka.ActorRef[Any]] = []
        self.context: ExtensionContext | None = None


def extension_name(module_name: str) -> str:
    """The short name of an extension: the last part of its module's name."""
    return module_name.rsplit(".", 1)[-1].lower()


def load_extensions(module_names: Sequence[str]) -> list[LoadedExtension]:
    """Import every EXTENSIONS module and find its `setup`, before anything starts, so a
    typo costs nothing. Raises ConfigError naming the module."""
    loaded: list[LoadedExtension] = []
    seen: dict[str, str] = {}
    for module_name in module_names:
        module = import_module_for("EXTENSIONS", module_name)
        setup = getattr(module, "setup", None)
        if not callable(setup):
            raise ConfigError(f"EXTENSIONS: module {module_name!r} has no setup(context) function")
        extension = LoadedExtension(module_name, setup)
        if not _NAME.fullmatch(extension.name):
            raise ConfigError(
                f"EXTENSIONS: module {module_name!r}: its name {extension.name!r} must be "
                "lower-case letters, digits and _"
            )
        if extension.name in seen:
            raise ConfigError(
                f"EXTENSIONS: {seen[extension.name]!r} and {module_name!r} share the name "
                f"{extension.name!r} (their routes and settings would collide)"
            )
        seen[extension.name] = module_name
        loaded.append(extension)
    return loaded


def run_setup(extension: LoadedExtension, context: ExtensionContext) -> None:
    """Call the setup and keep the actors it returned. Raises ConfigError naming the
    module if it raises or returns something other than actors."""
    extension.context = context
    before = {ref.actor_urn for ref in pykka.ActorRegistry.get_all()}
    try:
        returned = extension.setup(context)
    except Exception as exc:
        # Actors it started before failing would keep the process alive: stop them.
        for ref in pykka.ActorRegistry.get_all():
            if ref.actor_urn not in before:
                ref.stop(block=False)
        if isinstance(exc, ConfigError):
            raise ConfigError(f"EXTENSIONS: {extension.module_name}: {exc.message}") from None
        raise ConfigError(
            f"EXTENSIONS: {extension.module_name}.setup failed: {type(exc).__name__}: {exc}"
        ) from exc
    actors = list(returned or ())
    if not all(isinstance(ref, pykka.ActorRef) for ref in actors):
        for ref in actors:
            if isinstance(ref, pykka.ActorRef):
                ref.stop(block=False)
        raise ConfigError(
            f"EXTENSIONS: {extension.module_name}.setup must return a list of actor refs"
        )
    extension.actors = actors


def unclaimed_sections(settings: Settings, extensions: Sequence[LoadedExtension]) -> list[str]:
    """Config file tables that no running extension read: most likely a typo."""
    read = {ext.name for ext in extensions if ext.context is not None and ext.context.section_read}
    return sorted(
        name for name in settings.config_tables if name not in read and name not in CORE_SECTIONS
    )
