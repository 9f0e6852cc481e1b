"""``portal audit``: the evidence chain verified; a customer's evidence exported with its proof."""

from __future__ import annotations

import json
from pathlib import Path

import click

from portal.cli.base import in_app
from portal.core import db
from portal.core.models import Customer
from portal.domain import audit


@click.group("audit")
def audit_group() -> None:
    """The evidence chain of acceptances, attestations and events."""


def _head(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[int, str] | None:
    if value is None:
        return None
    seq, _, entry_hash = value.partition(":")
    if not seq.isdigit() or len(entry_hash) != 64:
        raise click.BadParameter("give SEQ:HASH, as `portal audit verify` prints the head")
    return int(seq), entry_hash.lower()


@audit_group.command("verify")
@click.option(
    "--head",
    callback=_head,
    metavar="SEQ:HASH",
    help="A head printed earlier (by verify, or in an export) that must still be in the chain: "
    "shows newest entries removed with their rows, which the chain alone cannot.",
)
def audit_verify(head: tuple[int, str] | None) -> None:
    """Check every entry from the first to the newest, and that every row is chained. Exits 1,
    naming the first entry or row altered, inserted or missing, when the chain does not hold."""
    with in_app() as app, db.reading_session(app) as session:
        report = audit.verify(session, db.audit_keys(app.config), head=head)
    if report.problem is not None:
        raise click.ClickException(report.problem)
    click.echo(
        f"the chain holds: {report.entries} entries, head {report.head_seq}:{report.head_hash}"
    )


@audit_group.command("export")
@click.argument("customer_id")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON to this file instead of printing it.",
)
def audit_export(customer_id: str, output: Path | None) -> None:
    """A customer's evidence (acceptances, attestations, events), each row with its chain entry,
    the chain's head, and how to check them, as JSON."""
    with in_app() as app, db.reading_session(app) as session:
        if session.get(Customer, customer_id) is None:
            raise click.ClickException(f"no customer {customer_id}")
        exported = audit.export(session, customer_id)
    text = json.dumps(exported, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"{len(exported['items'])} rows of evidence written to {output}")
