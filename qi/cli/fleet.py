"""``qi up``, ``qi ps``, ``qi down``: the whole platform as supervised processes."""

from __future__ import annotations

import os
import sys
import time

import click

from qi.cli._common import USER_ERRORS, fail, run, table
from qi.fleet import probe
from qi.fleet.spec import fleet
from qi.fleet.supervisor import Supervisor, load_state
from qi.platform import Platform
from qi.stack import process


def _health(run_dir, instance: str) -> tuple[str, str]:
    """(health, lag) of an instance from its /health endpoint, or ('-', '-')."""
    try:
        h = probe.health(run_dir, instance)
    except probe.NoAnswer as e:
        return ("no answer" if e.announced else "-"), "-"
    return ("ready" if h.get("ready") else "not ready"), str(h.get("lag", "-"))


def _supervisor_record(platform: Platform) -> process.ProcessRecord | None:
    path = platform.stack.run_dir / "supervisor.json"
    try:
        return process.ProcessRecord.model_validate_json(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def running(platform: Platform) -> bool:
    """Whether this run directory's supervisor is alive."""
    rec = _supervisor_record(platform)
    return rec is not None and process.process_of(rec) is not None


def _ensure_log_key(platform: Platform) -> None:
    """The audit worker signs tree heads: on the embedded default, make its key pair once."""
    a = platform.settings.audit
    key_dir = platform.log_key_dir()
    if (key_dir / f"{a.key_name}.pub.json").exists():
        return
    from events.signing import HybridKeyPair

    HybridKeyPair.generate(key_id=f"{a.log_id}/1").save(key_dir, a.key_name)
    click.echo(f"generated the audit log's key pair in {key_dir} (private key files mode 0600)")


@click.command()
@click.option("--wait", "wait_s", type=float, default=30.0, show_default=True,
              help="how long to wait for every worker to be running")
@click.pass_obj
def up(platform: Platform, wait_s: float) -> None:
    """Start the local stack (unless endpoints are configured) and every worker, supervised.

    Idempotent: a running platform is left as it is. Each worker logs to
    .qi/logs/<worker>.log and is restarted with backoff if it dies.
    """
    try:
        if platform.uses_local_stack:
            click.echo("starting the local stack...")
            platform.stack.up()
        run(platform.ensure_topics())
        if platform.uses_local_stack:
            _ensure_log_key(platform)
    except USER_ERRORS as e:
        fail(f"{e}\nInspect with `qi stack status`; clean up with `qi down`.")
    run_dir = platform.stack.run_dir
    rec = _supervisor_record(platform)
    if rec and process.process_of(rec):
        click.echo(f"the platform is already running (supervisor pid {rec.pid})")
    else:
        rec = process.spawn(
            [sys.executable, "-m", "qi", "supervise"], log=run_dir / "logs" / "supervisor.log", cwd=os.getcwd(),
            env={"QI_STACK_RUN_DIR": str(run_dir)},
        )
        (run_dir / "supervisor.json").write_text(rec.model_dump_json())
        (run_dir / "fleet.json").unlink(missing_ok=True)
        click.echo(f"supervisor started (pid {rec.pid}), logs in {run_dir / 'logs'}")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        state = load_state(run_dir)
        if state and state.instances and all(i.state == "running" for i in state.instances.values()):
            break
        if process.process_of(rec) is None:
            fail(f"the supervisor exited; see {run_dir / 'logs' / 'supervisor.log'}:\n"
                 + process.tail(run_dir / "logs" / "supervisor.log"))
        time.sleep(0.2)
    _print_ps(platform)


@click.command(hidden=True)
@click.pass_obj
def supervise(platform: Platform) -> None:
    """Run the supervisor in the foreground (what `qi up` starts in the background)."""
    f = platform.settings.fleet
    specs = fleet(f.instances, bridge_config=str(f.bridge_config), standby=f.standby)
    run(Supervisor(specs, run_dir=platform.stack.run_dir, grace_s=f.stop_grace_s).run())


def _print_ps(platform: Platform) -> bool:
    state = load_state(platform.stack.run_dir)
    rec = _supervisor_record(platform)
    if state is None or rec is None or process.process_of(rec) is None:
        click.echo("no workers running (start them with `qi up`)")
        return False
    now = time.time()
    rows = []
    for i in state.instances.values():
        uptime = f"{now - i.started_at:.0f}s" if i.started_at and i.state == "running" else "-"
        health, lag = _health(platform.stack.run_dir, i.name) if i.state == "running" else ("-", "-")
        rows.append([i.name, str(i.pid or "-"), i.state, uptime, str(i.restarts), health, lag,
                     "-" if i.last_exit is None else str(i.last_exit), os.path.relpath(i.log)])
    click.echo(table(rows, ["worker", "pid", "state", "uptime", "restarts", "health", "lag", "last exit", "log"]))
    return all(i.state == "running" for i in state.instances.values())


@click.command()
@click.pass_obj
def ps(platform: Platform) -> None:
    """The platform's worker processes: pid, state, uptime, restarts. Exits 1 unless all run."""
    if not _print_ps(platform):
        raise SystemExit(1)


@click.command()
@click.option("--keep-stack", is_flag=True, help="stop the workers only")
@click.option("--purge", is_flag=True, help="also delete the local stack's data (the log and every read model)")
@click.pass_obj
def down(platform: Platform, keep_stack: bool, purge: bool) -> None:
    """Stop every worker (SIGTERM, then SIGKILL after a grace period), then the local stack.

    Data is kept (the log survives, `qi up` resumes where it was) unless --purge.
    """
    rec = _supervisor_record(platform)
    if rec is not None:
        res = process.stop(rec, grace_s=platform.settings.fleet.stop_grace_s + 10)
        (platform.stack.run_dir / "supervisor.json").unlink(missing_ok=True)
        click.echo("workers stopped" if res.was_running else "no workers were running")
    if not keep_stack and platform.uses_local_stack:
        try:
            results = platform.stack.down(purge=purge)
        except USER_ERRORS as e:
            fail(str(e))
        click.echo(f"stack stopped ({sum(r.was_running for r in results)} process(es))"
                   + ("; data deleted" if purge else f"; data kept in {platform.stack.data_dir}"))
