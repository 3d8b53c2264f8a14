"""The ``authz`` command: thin wrappers over services, ``--json`` for scripts.

Creating commands act at once; destructive ones ask for ``--yes``. Bad input is one line on
stderr and exit code 2, with nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import FlaskGroup
from flask.cli import with_appcontext
from flask_migrate.cli import db as db_commands
from sqlalchemy.exc import SQLAlchemyError

from authz import create_app
from authz.errors import AuthzError
from authz.errors import Unavailable
from authz.extensions import db

OPERATOR = "operator:cli"


def _create_app() -> Any:
    return create_app()


class CommandError(click.ClickException):
    """One line on stderr and an exit code: 2 for bad input, 1 when something is unavailable."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"authz: error: {self.format_message()}", err=True)


class AuthzGroup(FlaskGroup):
    """Turns domain and database errors raised by any subcommand into :class:`CommandError`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuthzError as error:
            raise CommandError(error.description,
                               1 if isinstance(error, Unavailable) else 2) from None
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or type(error).__name__).splitlines()[0]
            raise CommandError(f"database: {reason} (is it reachable, and migrated with"
                               " `authz db upgrade`?)", 1) from None


@click.group(cls=AuthzGroup, create_app=_create_app, add_default_commands=False,
             add_version_option=False, load_dotenv=False, set_debug_flag=False)
def authz_cli() -> None:
    """authz: consent and access-control authorization service."""


authz_cli.add_command(db_commands, "db")


def emit(value: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=None) if as_json else text(value))


def main() -> None:
    """Console-script entry point."""
    authz_cli.main(prog_name="authz")


# -- serve --------------------------------------------------------------------------------------

@authz_cli.command("serve", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes.")
@click.option("--server", type=click.Choice(["gunicorn", "granian"]), default="gunicorn",
              show_default=True)
@click.option("--jobs/--no-jobs", "run_jobs", default=True, show_default=True,
              help="Also run the periodic jobs (audit sealing, purges) in a child process;"
                   " leases keep it to one runner per job across instances.")
def serve_command(host: str, port: int, workers: int, server: str, run_jobs: bool) -> None:
    """Apply migrations, make sure signing keys exist, then serve with a production server."""
    from authz import server as servers
    from authz.startup import prepare

    if server == "granian":
        try:
            import granian  # noqa: F401 - optional: `pip install granian`
        except ImportError:
            raise CommandError("--server granian needs the granian package"
                               " (pip install granian); the default is gunicorn") from None
    metrics_dir = servers.prepare_metrics_dir()
    display = f"[{host}]" if ":" in host else host
    os.environ.setdefault("AUTHZ_ISSUER", f"http://{display}:{port}")
    app = create_app()  # validates the configuration before anything is bound
    prepare(app)
    issuer = app.config["AUTHZ_ISSUER"]
    click.echo(f"authz serving on http://{display}:{port} (issuer {issuer}, {workers} "
               f"{server} workers{', demo mode' if app.config['AUTHZ_DEMO'] else ''})", err=True)
    jobs = servers.start_jobs() if run_jobs else None
    try:
        servers.run(server, host, port, workers)
    finally:
        if jobs is not None:
            servers.stop_jobs(jobs)
        shutil.rmtree(metrics_dir, ignore_errors=True)


# -- institutions -------------------------------------------------------------------------------

@authz_cli.group("institution")
def institution_group() -> None:
    """Register and list institutions."""


@institution_group.command("add")
@click.option("--name", required=True)
@click.option("--type", "kind", required=True, help="hospital|clinic|pharmacy|care_provider|"
              "municipality|research|resource_server")
@click.option("--code", required=True, help="National institution code.")
@click.option("--role", "roles", multiple=True,
              help="A practitioner role it may assert (repeatable; default: all its type allows).")
@click.option("--emergency", is_flag=True, help="Registered for emergency care (hospitals).")
@click.option("--json", "as_json", is_flag=True)
def institution_add(name: str, kind: str, code: str, roles: tuple[str, ...], emergency: bool,
                    as_json: bool) -> None:
    """Register an institution."""
    from authz.registry import service

    created = service.add_institution(
        db.session(), service.InstitutionSpec(name, kind, code, roles, emergency), actor=OPERATOR)
    emit(created.to_dict(), as_json, lambda d: f"{d['id']}\t{d['type']}\t{d['code']}\t{d['name']}")


@institution_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def institution_list(as_json: bool) -> None:
    """List institutions."""
    from authz.registry import service

    rows = [i.to_dict() for i in service.list_institutions(db.session())]
    emit(rows, as_json, lambda rs: "\n".join(
        f"{d['id']}\t{d['type']}\t{d['code']}\t{d['name']}" for d in rs))


@institution_group.command("show")
@click.argument("institution_id")
@click.option("--json", "as_json", is_flag=True)
def institution_show(institution_id: str, as_json: bool) -> None:
    """Show one institution."""
    from authz.registry import service

    emit(service.get_institution(db.session(), institution_id).to_dict(), as_json, _pretty)


# -- clients ------------------------------------------------------------------------------------

@authz_cli.group("client")
def client_group() -> None:
    """Register, list, disable and delete OAuth clients."""


@client_group.command("add")
@click.option("--institution", required=True, help="Institution id.")
@click.option("--name", required=True)
@click.option("--auth-method", required=True, type=click.Choice(["none", "private_key_jwt"]))
@click.option("--jwks", "jwks_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON file with the client's public keys (private_key_jwt).")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Repeatable.")
@click.option("--scope", required=True, help='Space-separated, e.g. "openid decisions".')
@click.option("--client-id", help="Choose the client id (default: generated).")
@click.option("--resource-uri", help="RFC 8707 resource identifier (resource servers only).")
@click.option("--require-par", is_flag=True,
              help="Accept only pushed authorization requests from it (RFC 9126).")
@click.option("--dpop-bound", is_flag=True,
              help="Issue it tokens only with a DPoP proof, all bound to its key (RFC 9449).")
@click.option("--json", "as_json", is_flag=True)
def client_add(institution: str, name: str, auth_method: str, jwks_file: Path | None,
               redirect_uris: tuple[str, ...], scope: str, client_id: str | None,
               resource_uri: str | None, require_par: bool, dpop_bound: bool,
               as_json: bool) -> None:
    """Register an OAuth client of an institution."""
    from authz.registry import rules
    from authz.registry import service

    jwks = None
    if jwks_file is not None:
        try:
            with jwks_file.open("rb") as handle:  # bounded: --jwks /dev/zero must not hang
                jwks = handle.read(rules.MAX_JWKS_BYTES + 1)
        except OSError as error:
            raise CommandError(f"cannot read {jwks_file}: {error.strerror}") from None
    created = service.add_client(db.session(), service.ClientSpec(
        institution=institution, name=name, auth_method=auth_method,
        redirect_uris=redirect_uris, scope=scope, jwks=jwks, client_id=client_id,
        resource_uri=resource_uri, require_par=require_par, dpop_bound=dpop_bound),
        actor=OPERATOR)
    emit(created.to_dict(), as_json, lambda d: d["client_id"])


@client_group.command("list")
@click.option("--institution", help="Only this institution's clients.")
@click.option("--json", "as_json", is_flag=True)
def client_list(institution: str | None, as_json: bool) -> None:
    """List clients."""
    from authz.registry import service

    rows = [c.to_dict() for c in service.list_clients(db.session(), institution)]
    emit(rows, as_json, lambda rs: "\n".join(
        f"{d['client_id']}\t{d['institution']}\t{d['auth_method']}\t"
        f"{'enabled' if d['enabled'] else 'disabled'}\t{d['name']}" for d in rs))


@client_group.command("show")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def client_show(client_id: str, as_json: bool) -> None:
    """Show one client."""
    from authz.registry import service

    emit(service.get_client(db.session(), client_id).to_dict(), as_json, _pretty)


def _require_yes(yes: bool, consequence: str) -> None:
    if not yes:
        raise CommandError(f"{consequence}; pass --yes to confirm")


@client_group.command("disable")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Really disable.")
@click.option("--json", "as_json", is_flag=True)
def client_disable(client_id: str, yes: bool, as_json: bool) -> None:
    """Disable a client: it can no longer obtain or use tokens."""
    from authz.registry import service

    _require_yes(yes, "disabling a client stops its tokens working")
    client = service.set_client_enabled(db.session(), client_id, False, actor=OPERATOR)
    emit(client.to_dict(), as_json, lambda d: f"{d['client_id']} disabled")


@client_group.command("enable")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def client_enable(client_id: str, as_json: bool) -> None:
    """Enable a disabled client again."""
    from authz.registry import service

    client = service.set_client_enabled(db.session(), client_id, True, actor=OPERATOR)
    emit(client.to_dict(), as_json, lambda d: f"{d['client_id']} enabled")


@client_group.command("delete")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Really delete.")
@click.option("--json", "as_json", is_flag=True)
def client_delete(client_id: str, yes: bool, as_json: bool) -> None:
    """Delete a client and everything it holds."""
    from authz.registry import service

    _require_yes(yes, "deleting a client revokes its tokens")
    service.delete_client(db.session(), client_id, actor=OPERATOR)
    emit({"client_id": client_id, "deleted": True}, as_json, lambda d: f"{client_id} deleted")


# -- client registration tokens (RFC 7591 initial access tokens) -------------------------------

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: str) -> timedelta:
    """``90s``, ``30m``, ``24h`` or ``7d``."""
    number, unit = value[:-1], value[-1:]
    if unit not in _DURATION_UNITS or not number.isdigit():
        raise CommandError(f"--expires-in {value!r}: a whole number followed by s, m, h or d")
    return timedelta(seconds=int(number) * _DURATION_UNITS[unit])


@client_group.group("registration-token", invoke_without_command=True)
@click.option("--institution", help="The institution whose clients the token may register.")
@click.option("--expires-in", default="24h", show_default=True, help="e.g. 30m, 24h, 7d.")
@click.option("--uses", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="How many clients it may register.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def registration_token(institution: str | None, expires_in: str, uses: int,
                       as_json: bool) -> None:
    """Issue an initial access token for dynamic registration (printed once, stored hashed);
    list or revoke them with the subcommands."""
    from authz.database import utcnow
    from authz.oauth import registration

    if click.get_current_context().invoked_subcommand is not None:
        return
    if institution is None:
        raise CommandError("--institution is required to issue a registration token")
    row, token = registration.issue_initial_token(
        db.session(), institution, lifetime=_duration(expires_in), uses=uses, actor=OPERATOR,
        now=utcnow())
    emit({**row.to_dict(), "token": token}, as_json, lambda d: d["token"])


@registration_token.command("list")
@click.option("--json", "as_json", is_flag=True)
def registration_token_list(as_json: bool) -> None:
    """List registration tokens (never the tokens themselves)."""
    from authz.oauth import registration

    rows = [t.to_dict() for t in registration.list_initial_tokens(db.session())]
    emit(rows, as_json, lambda rs: "\n".join(
        f"{d['id']}\t{d['institution']}\t{d['uses_left']}\t{d['expires_at']}\t"
        f"{'revoked' if d['revoked_at'] else 'active'}" for d in rs))


@registration_token.command("revoke")
@click.argument("token_id")
@click.option("--yes", is_flag=True, help="Confirm.")
@click.option("--json", "as_json", is_flag=True)
def registration_token_revoke(token_id: str, yes: bool, as_json: bool) -> None:
    """Revoke a registration token; the clients it registered stay."""
    from authz.database import utcnow
    from authz.oauth import registration

    _require_yes(yes, "a revoked registration token cannot register clients any more")
    row = registration.revoke_initial_token(db.session(), token_id, actor=OPERATOR,
                                            now=utcnow())
    emit(row.to_dict(), as_json, lambda d: f"{d['id']} revoked")


# -- keys ---------------------------------------------------------------------------------------

@authz_cli.group("keys")
def keys_group() -> None:
    """Signing keys: list, initialise, rotate."""


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json: bool) -> None:
    """List signing keys (public parts and lifecycle dates)."""
    from authz.keys import service

    rows = [k.to_dict() for k in service.history(db.session())]
    for row in rows:
        row.pop("public_jwk")
    emit(rows, as_json, lambda rs: "\n".join(f"{r['kid']}\t{r['state']}" for r in rs))


@keys_group.command("init")
@click.option("--json", "as_json", is_flag=True)
def keys_init(as_json: bool) -> None:
    """Create the active and next keys if missing (serve does this too)."""
    from authz.keys import service

    created = service.ensure_keys(db.session(), current_app.config["AUTHZ_KEK_BYTES"],
                                  actor=OPERATOR)
    emit({"created": created}, as_json, lambda d: f"{len(created)} key(s) created")


@keys_group.command("rotate")
@click.option("--json", "as_json", is_flag=True)
def keys_rotate(as_json: bool) -> None:
    """Promote the published next key to active; the old one keeps verifying until retired."""
    from authz.keys import service

    result = service.rotate(db.session(), current_app.config["AUTHZ_KEK_BYTES"], actor=OPERATOR)
    emit(result, as_json, lambda d: "\n".join(f"{k}\t{v}" for k, v in d.items()))


# -- jobs ---------------------------------------------------------------------------------------

@authz_cli.group("jobs")
def jobs_group() -> None:
    """Periodic jobs (one runner per job across all instances)."""


@jobs_group.command("run")
@click.option("--once", is_flag=True, help="Run due jobs once and exit.")
@click.option("--poll", default=1.0, show_default=True, type=click.FloatRange(0.1, 60))
@click.option("--json", "as_json", is_flag=True)
def jobs_run(once: bool, poll: float, as_json: bool) -> None:
    """Run due jobs under database leases, until interrupted (or once)."""
    import authz.jobs.catalog  # noqa: F401 - registers every job
    from authz.jobs import runner

    while True:
        outcomes = runner.run_due(db.session(), current_app.config)
        for outcome in outcomes:
            if outcome.status != "skipped" or once:
                emit({"job": outcome.name, "status": outcome.status}, as_json,
                     lambda d: f"{d['job']}\t{d['status']}")
        if once:
            if any(o.status == "failed" for o in outcomes):
                sys.exit(1)
            return
        db.session.remove()
        time.sleep(poll)


@jobs_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def jobs_list(as_json: bool) -> None:
    """Show each job's lease and last run."""
    import authz.jobs.catalog  # noqa: F401
    from authz.jobs import runner

    leases = {lease.name: lease for lease in runner.leases(db.session())}
    rows = []
    for job in runner.registered():
        lease = leases.get(job.name)
        rows.append({"job": job.name, "interval_s": int(job.interval.total_seconds()),
                     "last_run_at": lease.last_run_at.isoformat() if lease and lease.last_run_at
                     else None, "last_status": lease.last_status if lease else None,
                     "holder": lease.holder if lease else None})
    emit(rows, as_json, lambda rs: "\n".join(
        f"{r['job']}\tevery {r['interval_s']}s\tlast {r['last_run_at'] or '-'}"
        f"\t{r['last_status'] or '-'}" for r in rs))


# -- audit --------------------------------------------------------------------------------------

@authz_cli.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log."""


@audit_group.command("verify")
@click.option("--export", "export_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Verify this export file offline instead of the database.")
@click.option("--checkpoints", "auditor_copy", type=click.Path(dir_okay=False, path_type=Path),
              help="An auditor's earlier copy of the checkpoint file to check the log against.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
@click.option("--json", "as_json", is_flag=True)
def audit_verify(export_file: Path | None, auditor_copy: Path | None, quiet: bool,
                 as_json: bool) -> None:
    """Check chain, checkpoint signatures, roots and consistency; exit 1 naming the first bad
    entry."""
    from authz.audit import checkpoints
    from authz.audit.export import verify_export
    from authz.audit.verify import verify_database

    auditor = checkpoints.read_file(auditor_copy) if auditor_copy is not None else None
    started = time.monotonic()

    def progress(count: int) -> None:
        if not quiet:
            rate = count / max(time.monotonic() - started, 1e-9)
            click.echo(f"authz: verified {count} entries ({rate:,.0f}/s)", err=True)

    if export_file is not None:
        verdict = verify_export(export_file, auditor, progress)
    else:
        verdict = verify_database(db.session(), auditor, progress)
    emit(verdict.to_dict(), as_json, lambda d: verdict.describe())
    if not verdict.ok:
        sys.exit(1)


@audit_group.command("seal")
@click.option("--json", "as_json", is_flag=True)
def audit_seal(as_json: bool) -> None:
    """Sign a checkpoint over the events appended since the last one (the job does this too)."""
    from authz.audit import checkpoints

    path = current_app.config["AUTHZ_AUDIT_CHECKPOINT_FILE"]
    made = None
    while True:  # a large backlog is sealed in several checkpoints
        sealed = checkpoints.seal(db.session(), current_app.config["AUTHZ_KEK_BYTES"],
                                  checkpoint_file=path)
        if sealed is None:
            break
        made = sealed
    checkpoints.sync_file(db.session(), path)
    latest = made or checkpoints.latest(db.session())
    result = {"sealed": made is not None, "checkpoint": latest.to_dict() if latest else None,
              "file": path}
    emit(result, as_json, lambda d: (
        f"sealed tree size {made.tree_size}" if made else "nothing new to seal"))


@audit_group.command("export")
@click.option("--out", "out_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def audit_export(out_file: Path, as_json: bool) -> None:
    """Write the log as JSON Lines: keys, checkpoints, proofs, records (for offline verify)."""
    from authz.audit.export import export

    result = export(db.session(), out_file,
                    lambda n: click.echo(f"authz: exported {n} entries", err=True))
    emit({**result, "file": str(out_file)}, as_json,
         lambda d: f"{d['events']} events, {d['checkpoints']} checkpoints -> {out_file}")


@audit_group.command("retain")
@click.option("--before", required=True, type=click.DateTime(["%Y-%m-%d"]),
              help="Move sealed ranges whose events are all older than this date (UTC).")
@click.option("--out", "out_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The export file the range moves to (must not exist).")
@click.option("--yes", is_flag=True, help="Really remove the moved events from the database.")
@click.option("--json", "as_json", is_flag=True)
def audit_retain(before: Any, out_file: Path, yes: bool, as_json: bool) -> None:
    """Move whole sealed ranges older than the retention period to an export file."""
    from datetime import UTC

    from authz.audit import retention

    _require_yes(yes, "retention removes events from the database (they move to --out)")
    result = retention.retain(db.session(), before.replace(tzinfo=UTC), out_file,
                              actor=OPERATOR,
                              retention_days=current_app.config["AUTHZ_AUDIT_RETENTION_DAYS"])
    emit(result, as_json, lambda d: f"{d['retained']} events moved to {d['file']}"
         if d["retained"] else "nothing old enough to retain")


# -- auditors -----------------------------------------------------------------------------------

@authz_cli.group("auditor")
def auditor_group() -> None:
    """Register, list and disable auditors (people who may read the audit log)."""


@auditor_group.command("add")
@click.option("--card", "card_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The auditor's card file (as `authz card issue` writes it).")
@click.option("--json", "as_json", is_flag=True)
def auditor_add(card_file: Path, as_json: bool) -> None:
    """Register the holder of a card as an auditor (by the card's person link)."""
    from authz.api.identity import verifier
    from authz.audit import auditors
    from authz.identity.errors import StatusUnavailable
    from authz.sim.card import AUTH_CERT
    from authz.sim.card import CardError
    from authz.sim.card import CardFileError
    from authz.sim.card import VirtualCard

    try:
        card = VirtualCard.load(card_file)
        certificate = card.certificate_der(AUTH_CERT)
    except (OSError, ValueError, CardFileError, CardError) as error:
        raise CommandError(f"cannot read card file {card_file}: "
                           f"{getattr(error, 'strerror', None) or error}") from None
    cards = verifier()
    try:
        link = cards.links.resolve(certificate, cards.audience)
    except StatusUnavailable:
        raise CommandError("the link service does not know this card, or is unreachable",
                           1) from None
    if link.status != "good":
        raise CommandError(f"this card's certificate is {link.status or 'not valid'};"
                           " register the holder's current card")
    auditor = auditors.add(db.session(), link.person_link_id, actor=OPERATOR)
    emit(auditor.to_dict(), as_json, lambda d: f"{d['id']}\t{d['status']}")


@auditor_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def auditor_list(as_json: bool) -> None:
    """List auditors."""
    from authz.audit import auditors

    rows = [a.to_dict() for a in auditors.listing(db.session())]
    emit(rows, as_json, lambda rs: "\n".join(f"{r['id']}\t{r['status']}\t{r['created_at']}"
                                             for r in rs))


@auditor_group.command("disable")
@click.argument("auditor_id")
@click.option("--yes", is_flag=True, help="Really disable.")
@click.option("--json", "as_json", is_flag=True)
def auditor_disable(auditor_id: str, yes: bool, as_json: bool) -> None:
    """Disable an auditor: their tokens stop working on the audit API at once."""
    from authz.audit import auditors

    _require_yes(yes, "disabling an auditor ends their access to the audit log")
    auditor = auditors.disable(db.session(), auditor_id, actor=OPERATOR)
    emit(auditor.to_dict(), as_json, lambda d: f"{d['id']} disabled")


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


from authz.sim.cli import card_group  # noqa: E402 - the simulator's groups (authz/sim/cli.py)
from authz.sim.cli import sim_group  # noqa: E402

authz_cli.add_command(card_group)
authz_cli.add_command(sim_group)


def _register_policy_commands() -> None:
    from authz.policy_cli import disaster_group
    from authz.policy_cli import policy_group

    authz_cli.add_command(policy_group)
    authz_cli.add_command(disaster_group)


_register_policy_commands()
from authz.demo_cli import demo_command  # noqa: E402 - `authz demo` (authz/demo_cli.py)

authz_cli.add_command(demo_command)
