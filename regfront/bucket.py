"""The bucket's lifecycle commands: ``regfront gc`` (collect, dry run, verify) and ``regfront
status`` (docs/retention.md). Registered on the ``regfront`` group by regfront/cli.py."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from regfront.failures import store_label
from registry.config import Config, load_config, with_overrides
from registry.gcstate import GCReport


def _config(config_file: str, storage: tuple[str, ...]) -> Config:
    return with_overrides(load_config(config_file), storage)


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB"


def print_collection(report: GCReport, plan: Any, *, as_json: bool) -> None:
    """What went (or, dry, would go), and the bytes freed per repository."""
    doomed = [obj.id for obj in plan.doomed] if plan is not None and report.dry_run else []
    if as_json:
        data = json.loads(report.to_json())
        if report.dry_run:
            data["would_delete"] = doomed
        click.echo(json.dumps(data, sort_keys=True))
        return
    verb = "would delete" if report.dry_run else "deleted"
    if report.error:
        click.echo(f"garbage collection {report.error}")
        return
    if report.dry_run:
        for line in doomed:
            click.echo(f"would delete {line}")
    counts = ", ".join(f"{n} {kind}s" for kind, n in sorted(report.deleted.items())) or "nothing"
    click.echo(f"{verb} {counts}; {report.candidates} candidates tracked"
               + (f"; {report.spared} spared (claimed by writers meanwhile)"
                  if report.spared else ""))
    for name, nbytes in sorted(report.freed_bytes.items()):
        click.echo(f"  {name}: {_mb(nbytes)} {'would be ' if report.dry_run else ''}freed")
    click.echo(f"total {_mb(report.bytes_freed)} {'would be ' if report.dry_run else ''}freed"
               f" in {report.seconds:.1f}s")
    if report.stopped:
        click.echo(f"stopped early: {report.stopped}; the next run goes on")


@click.command("gc")
@click.option("--config", "config_file", envvar="REGFRONT_CONFIG", required=True,
              type=click.Path(dir_okay=False), help="YAML config file (mirror:, gc:).")
@click.option("--storage", multiple=True, envvar="REGFRONT_STORAGE",
              help="Store URLs (replaces storage:); collection works on each primary.")
@click.option("--dry-run", is_flag=True, envvar="REGFRONT_GC_DRY_RUN",
              help="Say what would go and the bytes freed per repository; write nothing.")
@click.option("--verify", is_flag=True, envvar="REGFRONT_GC_VERIFY",
              help="Instead of collecting: check every kept image is whole, repair from the "
                   "upstream where a rule covers it.")
@click.option("--hash", "hash_blobs", is_flag=True, envvar="REGFRONT_GC_HASH",
              help="With --verify: read every blob and check its digest.")
@click.option("--json/--no-json", "as_json", default=False, envvar="REGFRONT_GC_JSON",
              help="One JSON object instead of text.")
def gc_command(config_file: str, storage: tuple[str, ...], dry_run: bool, verify: bool,
               hash_blobs: bool, as_json: bool) -> None:
    """Delete what retention no longer keeps, never what a pull or a writer needs."""
    from registry.store import open_store

    config = _config(config_file, storage)
    if hash_blobs and not verify:
        raise click.UsageError("--hash goes with --verify")
    several = len(config.primaries) > 1

    async def one(url: str) -> int:
        """Each primary is a bucket of its own: its own claims, state, lease and pull records."""
        store = open_store(url)
        if several and not as_json:
            click.echo(f"{store_label(url)}:")
        try:
            if verify:
                from lifecycle.verify import Verifier, print_verification

                result = await Verifier(config, store, hash_blobs=hash_blobs,
                                        repair=not dry_run).run()
                print_verification(result, as_json=as_json)
                return 1 if result.unrepaired else 0
            from lifecycle.gc import Collector

            report, plan = await Collector(config, store, dry_run=dry_run).run()
            print_collection(report, plan, as_json=as_json)
            return 0
        finally:
            await store.close()

    async def run() -> int:
        return max([await one(primary.url) for primary in config.primaries])

    sys.exit(asyncio.run(run()))


@click.command("status")
@click.option("--config", "config_file", envvar="REGFRONT_CONFIG", required=True,
              type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--storage", multiple=True, envvar="REGFRONT_STORAGE",
              help="Store URLs (replaces storage:); status reads the first primary.")
@click.option("--since", default="24h", show_default=True, envvar="REGFRONT_STATUS_SINCE",
              help="\"Pulled recently\": images pulled within this long count for exposure.")
@click.option("--json/--no-json", "as_json", default=False, envvar="REGFRONT_STATUS_JSON",
              help="One JSON object instead of text.")
def status_command(config_file: str, storage: tuple[str, ...], since: str,
                   as_json: bool) -> None:
    """Per rule and repository: tags, last sync, bytes, last pull, and what would break if
    its upstream went down now."""
    from lifecycle.status import print_status, take_status
    from registry.configtypes import parse_duration
    from registry.store import open_store

    config = _config(config_file, storage)
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    store = open_store(config.primary.url)

    async def run() -> None:
        try:
            print_status(await take_status(config, store, window), as_json=as_json)
        finally:
            await store.close()

    asyncio.run(run())
