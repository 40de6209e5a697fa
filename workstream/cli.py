"""The `workstream` command (also `python -m workstream`).

    workstream serve [--config FILE] [--port N] [--worker-count N] ...   run the server
    workstream submit TYPE [--payload JSON] [--wait]                      submit a job
    workstream jobs [--newest|--oldest] [--status S] [--type T] [--error TEXT]
                    [--created-after T] [--created-before T] [--id-prefix P]
                    [--idempotency-key K] [--limit N] [--cursor C]        list jobs
    workstream jobs ID [--attempts]                                       show one
    workstream cancel ID | retry ID                                       change a job
    workstream migrate [--config FILE] [--database-url URL]               create/upgrade schema

Client commands talk to the server at --url / WORKSTREAM_URL with --token / API_TOKEN.
This is the only module that configures logging. Exit status: 0 success; 1 failure
(server unreachable, request refused, job failed); 2 invalid settings or arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from workstream.client import DEFAULT_URL, ApiError, Client, ServerUnreachable, WaitTimeout
from workstream.client.progress import Progress, describe
from workstream.config import SETTINGS, Settings, load_settings
from workstream.converters import masked_url
from workstream.errors import ConfigError, WorkStreamError
from workstream.logs import configure_logging

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own exit status is 2 as well
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_settings_flags(
    parser: argparse.ArgumentParser, names: Sequence[str] | None = None
) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default: config/workstream.toml if it exists)",
    )
    for setting in SETTINGS:
        if names is not None and setting.name not in names:
            continue
        parser.add_argument(
            setting.flag,
            dest=setting.name,
            metavar=setting.env,
            # argparse expands %-formats in help: a literal % (as in "+-10%") is %%.
            help=f"{setting.help} (env {setting.env})".replace("%", "%%"),
        )


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=None, help=f"server URL (env WORKSTREAM_URL, default {DEFAULT_URL})"
    )
    parser.add_argument("--token", default=None, help="API token (env API_TOKEN)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="workstream", description="WorkStream: a durable job queue server.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    serve = commands.add_parser("serve", help="run the server")
    _add_settings_flags(serve)

    migrate = commands.add_parser("migrate", help="create or upgrade the storage schema")
    _add_settings_flags(migrate, ["database_url", "log_level", "log_format"])

    submit = commands.add_parser("submit", help="submit a job")
    submit.add_argument("type", help="job type (a registered handler)")
    submit.add_argument("--payload", default=None, help="JSON payload (default {})")
    submit.add_argument("--max-retries", type=int, default=None)
    submit.add_argument("--delay", default=None, help="start after this long: 30 or 2m")
    submit.add_argument("--run-at", default=None, help="start at this RFC 3339 time")
    submit.add_argument("--idempotency-key", default=None)
    submit.add_argument("--wait", action="store_true", help="wait until the job finishes")
    submit.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="with --wait: give up after this many seconds (default 300)",
    )
    _client_options(submit)

    jobs = commands.add_parser(
        "jobs",
        help="list jobs (newest first), or show one with its attempts",
        description="List jobs, newest first, a page at a time; when more match, the last "
        "line says so and gives the --cursor that continues. With ID: the job as JSON, its "
        "attempts under 'history' (--attempts: the attempts as text, tracebacks included).",
    )
    jobs.add_argument("id", nargs="?", help="show this job")
    order = jobs.add_mutually_exclusive_group()
    order.add_argument(
        "--newest", dest="order", action="store_const", const="newest", help="newest first"
    )
    order.add_argument(
        "--oldest", dest="order", action="store_const", const="oldest", help="oldest first"
    )
    jobs.add_argument("--status", default=None)
    jobs.add_argument("--type", default=None)
    jobs.add_argument("--error", default=None, help="text in the last error (3+ characters)")
    jobs.add_argument("--created-after", default=None, help="RFC 3339 time, inclusive")
    jobs.add_argument("--created-before", default=None, help="RFC 3339 time, exclusive")
    jobs.add_argument("--id-prefix", default=None, help="the start of the job id")
    jobs.add_argument("--idempotency-key", default=None)
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--cursor", default=None, help="continue where a previous page ended")
    jobs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    jobs.add_argument("--attempts", action="store_true", help="with ID: print the attempts as text")
    _client_options(jobs)

    for name, text in (
        ("cancel", "cancel a pending or failed job"),
        ("retry", "re-queue a failed job"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("id")
        _client_options(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _main(argv)
        sys.stdout.flush()  # a reader gone away shows here, not in the interpreter's exit
    except BrokenPipeError:
        # `workstream jobs | head -3`: the reader has what it wanted. Stop quietly (status
        # 1: not all was written); stdout goes to /dev/null, or Python's own flush at exit
        # would fail again and print a traceback.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    return status


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "migrate":
            return _migrate(args)
        return _client_command(args)
    except ConfigError as exc:
        print(f"workstream: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILED


def _settings(args: argparse.Namespace) -> Settings:
    flags = {setting.name: getattr(args, setting.name, None) for setting in SETTINGS}
    return load_settings(flags=flags, config_file=args.config)


def _serve(args: argparse.Namespace) -> int:
    from workstream.system import serve  # the server's imports are not needed by the client

    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format)
    _import_from_working_directory()
    _check_modules_exist(settings)
    try:
        return serve(settings)
    except ConfigError:
        raise
    except WorkStreamError as exc:
        print(f"workstream: cannot start: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"workstream: cannot start: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception:
        # A bug: say so in the log (as JSON), and exit rather than hang.
        logging.getLogger("workstream.crash").exception(
            "the server failed", extra={"event": "server_failed"}
        )
        return EXIT_FAILED


def _import_from_working_directory() -> None:
    """Modules named in JOB_HANDLERS, EXTENSIONS and WORKER_MIDDLEWARE are found in the
    working directory, as with `python -m workstream`: the installed `workstream` command
    would otherwise not look there. It is searched after the installed packages, so a stray
    file there (an `email.py`) cannot replace a module the server uses."""
    here = os.getcwd()
    if not any(os.path.abspath(entry or ".") == here for entry in sys.path):
        sys.path.append(here)


def _check_modules_exist(settings: Settings) -> None:
    """A module that cannot be found stops start-up with a line that says where it was
    looked for and what to do (exit 2)."""
    named = [
        *(("JOB_HANDLERS", name) for name in settings.job_handlers),
        *(("EXTENSIONS", name) for name in settings.extensions),
        *(("WORKER_MIDDLEWARE", entry.partition(":")[0]) for entry in settings.worker_middleware),
    ]
    for setting, name in named:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False  # a parent package is missing
        except Exception:
            continue  # it fails while importing: the import proper reports that
        if not found:
            top = name.partition(".")[0]
            raise ConfigError(
                f"{setting}: cannot import module {name!r}: it is neither in the working "
                f"directory ({os.getcwd()}) nor installed; run workstream from the directory "
                f"that holds {top}/ (or {top}.py), or add that directory to PYTHONPATH"
            )


def _migrate(args: argparse.Namespace) -> int:
    from workstream.store import store_from_url

    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format)
    store = store_from_url(settings.database_url)
    try:
        store.open()  # takes the lock and applies what is missing
    except ConfigError:
        raise  # a bad setting: exit 2, as for serve
    except WorkStreamError as exc:
        print(f"workstream: cannot migrate: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    store.close()
    print(f"schema is up to date ({masked_url(settings.database_url)})")
    return EXIT_OK


# -- client commands -------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("WORKSTREAM_URL") or DEFAULT_URL
    token = args.token or os.environ.get("API_TOKEN") or None
    return Client(url, token=token)


def _client_command(args: argparse.Namespace) -> int:
    try:
        client = _client(args)
    except ValueError as exc:
        print(f"workstream: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "submit":
            return _submit(client, args)
        if args.command == "jobs":
            return _jobs(client, args)
        job = client.cancel(args.id) if args.command == "cancel" else client.retry(args.id)
        _print_json(job)
        return EXIT_OK
    except ServerUnreachable as exc:
        print(f"workstream: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ApiError as exc:
        print(f"workstream: {exc.message} ({exc.code}, HTTP {exc.status})", file=sys.stderr)
        return EXIT_FAILED


def _submit(client: Client, args: argparse.Namespace) -> int:
    payload: Any = {}
    if args.payload is not None:
        try:
            payload = json.loads(args.payload)
        except ValueError as exc:
            print(f"workstream: --payload is not valid JSON: {exc}", file=sys.stderr)
            return EXIT_USAGE
    delay: Any = args.delay
    if delay is not None:
        with contextlib.suppress(ValueError):  # a duration such as "2m": the server parses it
            delay = float(delay)
    job = client.submit(
        args.type,
        payload,
        max_retries=args.max_retries,
        delay=delay,
        run_at=args.run_at,
        idempotency_key=args.idempotency_key,
    )
    if not args.wait:
        _print_json(job)
        return EXIT_OK
    progress = Progress(sys.stderr)
    try:
        job = client.wait(job["id"], timeout=args.timeout, on_progress=progress.update)
    except WaitTimeout as exc:
        progress.done()
        print(
            f"workstream: job {job['id']} did not finish within {args.timeout:g}s ({exc})",
            file=sys.stderr,
        )
        return EXIT_FAILED
    progress.done()
    _print_json(job)
    if job["status"] == "completed":
        return EXIT_OK
    # The verdict last, on stderr, with the error (a terminal's progress line is gone).
    print(f"workstream: {describe(job)}", file=sys.stderr)
    return EXIT_FAILED


def _jobs(client: Client, args: argparse.Namespace) -> int:
    if args.id:
        job = client.get(args.id)
        history = client.attempts(args.id)
        if args.attempts:
            print(_attempts_text(history))
        else:
            _print_json({**job, "history": history})
        return EXIT_OK
    page = client.page(
        status=args.status,
        type=args.type,
        limit=args.limit,
        order=args.order,
        cursor=args.cursor,
        created_after=args.created_after,
        created_before=args.created_before,
        id_prefix=args.id_prefix,
        idempotency_key=args.idempotency_key,
        error=args.error,
    )
    if args.json:
        _print_json(page.jobs)
    else:
        print(_table(page.jobs))
    if page.next_cursor is not None:
        # On stderr: stdout stays the page alone (a table, or JSON for other programs).
        print(f"more jobs match: add --cursor {page.next_cursor}", file=sys.stderr)
    return EXIT_OK


def _attempts_text(history: list[dict[str, Any]]) -> str:
    if not history:
        return "no attempts yet"
    blocks = []
    for attempt in history:
        where = " ".join(
            f"{name} {attempt[name]}"
            for name in ("node", "worker", "pid")
            if attempt.get(name) is not None
        )
        took = attempt.get("duration_ms")
        head = (
            f"attempt {attempt['number']}: {attempt['outcome']}"
            f"  started {attempt.get('started_at') or '-'}  finished {attempt['finished_at']}"
            + (f"  took {took:g} ms" if took is not None else "")
            + (f"  ({where})" if where else "")
        )
        lines = [head]
        if attempt.get("error"):
            lines.append(f"  error: {attempt['error']}")
        if attempt.get("traceback"):
            lines += ["  " + line for line in attempt["traceback"].rstrip("\n").splitlines()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _table(jobs: list[dict[str, Any]]) -> str:
    header = ("ID", "TYPE", "STATUS", "ATTEMPTS", "CREATED", "LAST ERROR")
    rows = [
        (
            job["id"],
            job["type"],
            job["status"],
            str(job["attempts"]),
            (job.get("created_at") or "")[:19].replace("T", " "),
            (job.get("last_error") or "")[:60],
        )
        for job in jobs
    ]
    if not rows:
        return "no jobs"
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    raise SystemExit(main())
