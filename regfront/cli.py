"""The ``regfront`` command: ``serve``, ``sync``, ``check``, ``import``, ``gc``, ``status``,
``containerd-config``, ``node-agent``.

Every flag has a ``REGFRONT_*`` environment twin. Configuration mistakes print one line each,
naming the file, line and key (or the flag), all at once, and exit 1 before anything is served
or written. Any other expected failure (a store, an upstream, a path) is one line too, naming
what failed, why and the fix (regfront/failures.py); anything else is a bug, whose traceback
``--debug`` shows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast, get_args

import click

from regfront.bucket import gc_command, status_command
from regfront.failures import EXPECTED, explain, explain_store, leaf, store_label
from registry.config import DEFAULT_LISTEN, Config, load_config, split_listen, with_overrides
from registry.errors import ConfigError, RegistryError
from registry.logs import LOG_LEVELS, LogFormat, LogLevel
from registry.logs import configure as configure_logging
from registry.store.errors import StoreError

logger = logging.getLogger("regfront")

# The validated config, and the logging the command line chose, travel to uvicorn's worker
# processes through the environment.
_RESOLVED_CONFIG_ENV = "REGFRONT_RESOLVED_CONFIG_JSON"
_RESOLVED_LOGGING_ENV = "REGFRONT_RESOLVED_LOGGING"
STORE_PROBE_TIMEOUT = 10.0  # covers the S3 client's own connect retries on a refused endpoint


class _Line(click.types.StringParamType):
    """Text whose environment twin holds one value per line: header values contain spaces."""

    envvar_list_splitter = "\n"


def _fail(message: str) -> NoReturn:
    """Say ``message`` (a line per mistake) and exit 1; under --debug, the traceback of the
    failure being handled first."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().params.get("debug") and sys.exc_info()[1]:
        click.echo(traceback.format_exc().rstrip(), err=True)
    for line in message.splitlines():  # a config with several mistakes: a line each
        click.echo(f"regfront: {line}", err=True)
    sys.exit(1)


@dataclass(frozen=True)
class Options:
    """The group's options, for the commands (``ctx.obj``)."""

    debug: bool = False
    log_level: LogLevel = "info"
    log_format: LogFormat | None = None  # None: the config's telemetry.log_format


class _Main(click.Group):
    """Runs a command; an expected failure leaves as one line and exit 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            # Not a catch-all answer: expected failures are told by type; anything else is
            # said to be a bug, and --debug shows where.
            if isinstance(leaf(error), EXPECTED):
                _fail(explain(error))
            if ctx.params.get("debug"):
                raise
            _fail(f"internal error, a bug: {type(leaf(error)).__name__}: {leaf(error)} - "
                  "run again with --debug (REGFRONT_DEBUG=1) for the traceback, and report it")


@click.group(cls=_Main, context_settings={"max_content_width": 100})
@click.version_option(package_name="regfront")
@click.option("--debug", is_flag=True, envvar="REGFRONT_DEBUG",
              help="Show the traceback of a failure (and any bug) instead of one line.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
              envvar="REGFRONT_LOG_LEVEL", help="Lowest level logged; debug also shows the "
              "libraries' own logs (botocore, httpx), which stay at warning otherwise.")
@click.option("--log-format", type=click.Choice(get_args(LogFormat)), envvar="REGFRONT_LOG_FORMAT",
              help="Log lines as json or text; default: the config's telemetry.log_format, "
              "else auto (text on a terminal, JSON otherwise).")
@click.pass_context
def main(ctx: click.Context, debug: bool, log_level: LogLevel,
         log_format: LogFormat | None) -> None:
    """regfront: an OCI pull gateway over object storage, for fleets of Kubernetes nodes.

    Start with `regfront check --config FILE`: it validates the config and probes every store
    and upstream it names.
    """
    ctx.obj = Options(debug, log_level, log_format)
    configure_logging(log_format or "auto", log_level)


def _configure_logging(ctx: click.Context, config: Config) -> tuple[LogFormat, LogLevel]:
    """The group's choice, else the config's: applied, and returned for worker processes."""
    options: Options = ctx.obj
    chosen = (options.log_format or config.telemetry.log_format, options.log_level)
    configure_logging(*chosen)
    return chosen


def _config_with_overrides(config_file: str | None, storage: tuple[str, ...],
                           overrides: dict[str, Any]) -> Config:
    try:
        return with_overrides(load_config(config_file), storage, overrides)
    except ConfigError as exc:
        _fail(str(exc))


def _require_store(url: str, doing: str) -> None:
    """Exit with one line naming the store, why and the fix unless it answers now."""
    from regfront.startup import require_store

    try:
        require_store(url, STORE_PROBE_TIMEOUT, doing)
    except ConfigError as exc:
        _fail(str(exc))


@main.command()
@click.option("--config", "config_file", envvar="REGFRONT_CONFIG", type=click.Path(dir_okay=False),
              help="YAML config file (storage:, gateway:, ...).")
@click.option("--storage", multiple=True, envvar="REGFRONT_STORAGE",
              help="Store URL, nearest first; repeatable. Default ./regfront-data.")
@click.option("--listen", envvar="REGFRONT_LISTEN",
              help="HOST:PORT (default 127.0.0.1:5000, or 0.0.0.0:$PORT when PORT is set).")
@click.option("--workers", type=int, envvar="REGFRONT_WORKERS", help="Worker processes.")
@click.option("--tls-cert", envvar="REGFRONT_TLS_CERT", help="Serve HTTPS with this PEM "
              "certificate (chain)...")
@click.option("--tls-key", envvar="REGFRONT_TLS_KEY", help="... and this PEM private key.")
@click.option("--access-log/--no-access-log", default=None, envvar="REGFRONT_ACCESS_LOG",
              help="A log line per request (method, path, status, seconds): shows whether a "
                   "pull went through regfront. Default: telemetry.access_log_sample of them.")
@click.pass_context
def serve(ctx: click.Context, config_file: str | None, storage: tuple[str, ...],
          listen: str | None, workers: int | None, tls_cert: str | None, tls_key: str | None,
          access_log: bool | None) -> None:
    """Serve the OCI pull API from the configured stores."""
    import uvicorn

    from regfront.startup import check_listen, check_tls, report_stores

    config = _config_with_overrides(config_file, storage, {
        "listen": listen, "workers": workers, "tls_cert": tls_cert, "tls_key": tls_key})
    platform_port = os.environ.get("PORT", "")
    set_by = "choose another with --listen HOST:PORT or REGFRONT_LISTEN"
    if listen is None and platform_port and config.gateway.listen == DEFAULT_LISTEN:
        # Cloud Run (and Heroku, Knative, ...) name the port in $PORT: it replaces the default
        # address; --listen, REGFRONT_LISTEN and the file's gateway.listen still win.
        try:
            config = with_overrides(config, (), {"listen": f"0.0.0.0:{platform_port}"})
        except ConfigError:
            _fail(f"PORT={platform_port!r}: expected a port number")
        set_by = f"the address comes from PORT={platform_port}: {set_by}"
    elif listen is None and config.gateway.listen != DEFAULT_LISTEN:
        set_by = f"{set_by}, or gateway.listen in {config_file}"
    if access_log is not None:
        telemetry = config.telemetry.model_copy(
            update={"access_log_sample": 1.0 if access_log else 0.0})
        config = config.model_copy(update={"telemetry": telemetry})
    try:
        from registry.store import open_store

        for entry in config.storage:
            open_store(entry.url)  # fail on a bad URL now, not in every worker
        if config.auth is not None:
            from gateway.auth import Auth

            # Reads its key, password and token files: fail now, in one line.
            Auth(config, config.mirror_index())
        if config.gateway.tls_cert and config.gateway.tls_key:
            check_tls(config.gateway.tls_cert, config.gateway.tls_key)
        host, port = split_listen(config.gateway.listen)
        check_listen(host, port, set_by)  # before anything says "serving on"
    except ConfigError as exc:
        _fail(str(exc))
    os.environ[_RESOLVED_CONFIG_ENV] = config.model_dump_json()
    os.environ[_RESOLVED_LOGGING_ENV] = ",".join(_configure_logging(ctx, config))
    scheme = "https" if config.gateway.tls_cert else "http"
    shown = f"[{host}]" if ":" in host else host
    logger.info("serving %s on %s://%s:%d", ", ".join(store_label(s.url) for s in config.storage),
                scheme, shown, port)
    logger.info("point nodes at it: the node agent (deploy/kubernetes/node-agent.yaml), or on "
                "one node: regfront containerd-config --gateway %s://%s:%d --registry docker.io "
                "--containerd-version VERSION (docs/containerd.md)", scheme, shown, port)
    if config.telemetry.access_log_sample >= 1.0:
        logger.info("access log on: a regfront.access line for every request (--no-access-log "
                    "turns it off)")
    report_stores([s.url for s in config.storage], STORE_PROBE_TIMEOUT)
    uvicorn.run("regfront.cli:app_from_environment", factory=True, host=host, port=port,
                workers=config.gateway.workers, access_log=False, server_header=False,
                log_level="info", timeout_graceful_shutdown=30, log_config=None,
                ssl_certfile=config.gateway.tls_cert, ssl_keyfile=config.gateway.tls_key)


def app_from_environment() -> Any:
    """uvicorn's factory in each worker: the app for the config ``serve`` validated."""
    from gateway.app import create_app

    config = Config.model_validate_json(os.environ[_RESOLVED_CONFIG_ENV])
    log_format, _, level = os.environ.get(_RESOLVED_LOGGING_ENV, "").partition(",")
    configure_logging(  # worker processes start afresh
        cast(LogFormat, log_format) if log_format in get_args(LogFormat)
        else config.telemetry.log_format,
        cast(LogLevel, level) if level in LOG_LEVELS else "info")
    return create_app(config)


@main.command("sync")
@click.option("--config", "config_file", envvar="REGFRONT_CONFIG", required=True,
              type=click.Path(dir_okay=False), help="YAML config file (upstreams:, mirror:).")
@click.option("--storage", multiple=True, envvar="REGFRONT_STORAGE",
              help="Store URLs (replaces storage:); sync writes to the last, the primary.")
@click.option("--once", is_flag=True, envvar="REGFRONT_SYNC_ONCE",
              help="Run every selected rule once and exit (CronJob, Cloud Run job, ECS task).")
@click.option("--rule", "rule_names", multiple=True, envvar="REGFRONT_SYNC_RULE",
              help="Only this rule (repeatable). Default: all.")
@click.option("--dry-run", is_flag=True, envvar="REGFRONT_SYNC_DRY_RUN",
              help="Say what would be copied; write nothing.")
@click.option("--json/--no-json", "json_lines", default=None, envvar="REGFRONT_SYNC_JSON",
              help="JSON log lines (default when stdout is not a terminal).")
@click.pass_context
def sync_command(ctx: click.Context, config_file: str, storage: tuple[str, ...], once: bool,
                 rule_names: tuple[str, ...], dry_run: bool, json_lines: bool | None) -> None:
    """Mirror the configured upstream repositories into the primary store."""
    import time

    from sync.report import JsonEvents, RichEvents, print_summary, summary
    from sync.worker import Syncer, exit_status

    config = _config_with_overrides(config_file, storage, {})
    _configure_logging(ctx, config)
    terminal = sys.stdout.isatty() if json_lines is None else not json_lines
    try:
        syncer = Syncer(config, dry_run=dry_run)
        rules = syncer.rules(rule_names)
    except ConfigError as exc:  # anything else is a bug, and says so
        _fail(str(exc))
    if not rules:
        _fail(f"{config_file}: no mirror rules to run")
    # Every image would fail alike on a store that cannot be read: say so once, with the fix.
    _require_store(config.primary.url, "read")
    events = RichEvents() if terminal else JsonEvents()

    async def run() -> int:
        started = time.monotonic()
        try:
            if once or dry_run:
                results = await syncer.run_once(rules)
            else:
                from lifecycle.schedule import collect_forever

                # Garbage collection on gc.schedule, if any, beside the rules' schedules.
                await asyncio.gather(syncer.run_forever(rules),
                                     collect_forever(config, syncer.stores))
                return 0
        finally:
            if isinstance(events, RichEvents):
                events.stop()
            await syncer.aclose()
        print_summary(summary(results, time.monotonic() - started, events.tally),
                      terminal=terminal)
        return exit_status(results)

    syncer.events = events
    sys.exit(asyncio.run(run()))


main.add_command(gc_command)
main.add_command(status_command)


@main.command("import")
@click.argument("source")
@click.argument("image")
@click.option("--storage", required=True, envvar="REGFRONT_STORAGE", help="Target store URL.")
def import_(source: str, image: str, storage: str) -> None:
    """Import SOURCE (oci:DIR[:REF] or docker-archive:FILE[:REF]) as IMAGE (NAME:TAG)."""
    from registry.imports import import_image
    from registry.names import split_image
    from registry.store import open_store

    try:
        name, tag = split_image(image)
        if not isinstance(tag, str):
            raise ConfigError(f"{image}: import needs NAME:TAG, not a digest")
        store = open_store(storage)

        async def run() -> str:
            try:
                return (await import_image(store, source, name, tag)).describe()
            finally:
                await store.close()

        click.echo(asyncio.run(run()))
    except ConfigError as exc:
        _fail(str(exc))
    except RegistryError as exc:
        _fail(f"{source}: {exc}")
    except StoreError as exc:
        _fail(explain_store(storage, exc, "import"))


@main.command("check")
@click.option("--config", "config_file", envvar="REGFRONT_CONFIG", type=click.Path(dir_okay=False),
              help="YAML config file; default: the defaults (./regfront-data).")
@click.option("--storage", multiple=True, envvar="REGFRONT_STORAGE",
              help="Store URLs (replace storage:), nearest first; repeatable.")
@click.option("--json", "as_json", is_flag=True, envvar="REGFRONT_CHECK_JSON",
              help="The verdicts as one JSON document.")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              envvar="REGFRONT_CHECK_TIMEOUT", help="Seconds each store and upstream may take.")
def check(config_file: str | None, storage: tuple[str, ...], as_json: bool,
          timeout: float) -> None:
    """Validate the config, then probe every store and upstream it names.

    A line per verdict; exit status 0 when nothing failed, else 1. Stores are listed and read;
    the primary, when sync or pull-through write to it, also gets a probe object written, read
    back and deleted (under regfront/v1/check/); a store that signs URLs gets one fetched.
    Upstreams get one manifest HEAD (free on Docker Hub), and their rate limits are reported.
    """
    from regfront.check import config_verdicts, passed, render_json, render_table, run_checks

    source = config_file or "(defaults)"
    try:
        config: Config | None = with_overrides(load_config(config_file), storage, {})
        error = None
    except ConfigError as exc:
        config, error = None, exc
    verdicts = config_verdicts(source, error, config)
    if config is not None:
        verdicts += asyncio.run(run_checks(config, budget=timeout))
    click.echo(render_json(verdicts) if as_json else render_table(verdicts))
    sys.exit(0 if passed(verdicts) else 1)


@main.command("containerd-config")
@click.option("--gateway", required=True, envvar="REGFRONT_GATEWAY",
              help="The gateway's URL as nodes reach it, e.g. http://regfront.internal:5000.")
@click.option("--registry", "registries", multiple=True, required=True,
              envvar="REGFRONT_REGISTRY",
              help="Registry to mirror (docker.io, ghcr.io, _default); NAME=URL sets the "
                   "fallback server. Repeatable.")
@click.option("--out", envvar="REGFRONT_OUT", type=click.Path(file_okay=False),
              help="The hosts directory, e.g. /etc/containerd/certs.d (see --containerd-version).")
@click.option("--dial-timeout", default="3s", envvar="REGFRONT_DIAL_TIMEOUT", show_default=True,
              help="How long containerd (>= 2.1) waits to connect before falling back.")
@click.option("--skip-verify", is_flag=True, envvar="REGFRONT_SKIP_VERIFY",
              help="Do not verify the gateway's TLS certificate.")
@click.option("--ca-file", envvar="REGFRONT_CA_FILE", help="CA bundle for the gateway's TLS.")
@click.option("--client-cert", envvar="REGFRONT_CLIENT_CERT",
              help="Client certificate (PEM) nodes present to the gateway (mutual TLS)...")
@click.option("--client-key", envvar="REGFRONT_CLIENT_KEY", help="... and its key.")
@click.option("--header", "headers", multiple=True, type=_Line(), envvar="REGFRONT_HEADER",
              help="NAME=VALUE sent with every request to the gateway, e.g. "
                   "'Authorization=Bearer TOKEN' (auth.static). Repeatable.")
@click.option("--header-file", "header_files", multiple=True, envvar="REGFRONT_HEADER_FILE",
              help="NAME=FILE: the same, the value read from FILE (a bare token for "
                   "Authorization becomes 'Bearer TOKEN'). Repeatable.")
@click.option("--containerd-version", envvar="REGFRONT_CONTAINERD_VERSION",
              help="The node's containerd version (e.g. 2.1.9): with --containerd-config, "
                   "write where this containerd's CRI (kubelet's) pulls read hosts files, and "
                   "name the one setting needed if there is none. Replaces --out.")
@click.option("--containerd-config", "containerd_file", envvar="REGFRONT_CONTAINERD_CONFIG",
              type=click.Path(dir_okay=False), default="/etc/containerd/config.toml",
              show_default=True, help="The node's containerd config (its imports are read).")
@click.option("--dry-run", is_flag=True, envvar="REGFRONT_CONTAINERD_DRY_RUN",
              help="Print the files it would write, and the setting the node needs; write "
                   "nothing (a node preflight: docs/deploy.md).")
def containerd_config(gateway: str, registries: tuple[str, ...], out: str | None,
                      dial_timeout: str, skip_verify: bool, ca_file: str | None,
                      client_cert: str | None, client_key: str | None, headers: tuple[str, ...],
                      header_files: tuple[str, ...], containerd_version: str | None,
                      containerd_file: str, dry_run: bool) -> None:
    """Write <dir>/<registry>/hosts.toml so containerd pulls through the gateway.

    With --containerd-version, <dir> is where that containerd's CRI pulls read them (its
    config decides, see docs/containerd.md); otherwise --out.
    """
    from node.containerd import DEFAULT_HOSTS_DIR, load_settings, parse_version, plan
    from node.hosts import parse_headers, parse_registry, write_hosts_dir

    try:
        parsed = [parse_registry(r) for r in registries]
        if (client_cert is None) != (client_key is None):
            raise ConfigError("--client-cert and --client-key go together")
        client = (client_cert, client_key) if client_cert and client_key else None
        if containerd_version is not None:
            decided = plan(parse_version(containerd_version), load_settings(containerd_file))
            click.echo(f"# containerd {containerd_version}: {decided.why}", err=True)
            if decided.change is not None:
                click.echo(f"# add to {containerd_file}, then restart containerd:\n"
                           f"{decided.change}", err=True)
            dirs = list(decided.dirs) or (
                [decided.config_path or DEFAULT_HOSTS_DIR] if out is None else [out])
        elif out is not None:
            dirs = [out]
        else:
            raise ConfigError("--out DIR or --containerd-version VERSION: where to write")
        if dry_run:
            for directory in dirs:
                for registry in parsed:
                    click.echo(str(Path(directory) / registry.name / "hosts.toml"))
            click.echo("# --dry-run: nothing written", err=True)
            return
        for directory in dirs:
            for path in write_hosts_dir(Path(directory), gateway, parsed,
                                        dial_timeout=dial_timeout, skip_verify=skip_verify,
                                        ca_file=ca_file, client=client,
                                        headers=parse_headers(headers, header_files)):
                click.echo(str(path))
    except ConfigError as exc:
        _fail(str(exc))


@main.command("node-agent")
@click.option("--config-dir", envvar="REGFRONT_NODE_CONFIG_DIR",
              default="/etc/regfront-node/config", show_default=True,
              type=click.Path(file_okay=False),
              help="The settings, one file per key (the mounted regfront-node-config ConfigMap).")
@click.option("--secret-dir", envvar="REGFRONT_NODE_SECRET_DIR",
              default="/etc/regfront-node/secret", show_default=True,
              type=click.Path(file_okay=False), help="Holds `authorization`, if the gateway "
              "wants a credential.")
@click.option("--containerd-config", "containerd_file", envvar="REGFRONT_CONTAINERD_CONFIG",
              default="/etc/containerd/config.toml", show_default=True,
              type=click.Path(dir_okay=False), help="The node's containerd config.")
@click.option("--containerd-socket", envvar="REGFRONT_CONTAINERD_SOCKET",
              default="/run/containerd/containerd.sock", show_default=True,
              help="containerd's socket: the agent asks its version and probes over the CRI.")
@click.option("--node-name", envvar="NODE_NAME", default="", help="This node (metric label, "
              "probe tag); the DaemonSet passes spec.nodeName.")
@click.option("--listen", envvar="REGFRONT_NODE_LISTEN", default="0.0.0.0:9105",
              show_default=True, help="HOST:PORT for /readyz and /metrics.")
@click.option("--once", is_flag=True, envvar="REGFRONT_NODE_ONCE",
              help="One round, print the status as JSON, exit 0 if the node is ready, else 1.")
def node_agent(config_dir: str, secret_dir: str, containerd_file: str, containerd_socket: str,
               node_name: str, listen: str, once: bool) -> None:
    """Keep hosts.toml where this node's kubelet pulls read it, and prove they reach the gateway."""
    import json

    from node.agent import Agent, ContainerdCRI
    from node.cri import CRIClient

    client = CRIClient(containerd_socket)
    agent = Agent(Path(config_dir), Path(secret_dir), Path(containerd_file),
                  ContainerdCRI(client), node_name=node_name)
    if once:
        from node.service import status_json

        status = agent.reconcile()
        click.echo(json.dumps(status_json(status), indent=2))
        sys.exit(0 if status.ready else 1)
    import uvicorn

    from node.service import create_app

    try:
        host, port = split_listen(listen)
    except ConfigError as exc:
        _fail(f"--listen: {exc}")
    uvicorn.run(create_app(agent, node_name), host=host, port=port, access_log=False,
                server_header=False, log_config=None, log_level="warning")
