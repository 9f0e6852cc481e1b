"""``portal mail``: the outbox."""

from __future__ import annotations

import click

from portal.cli.base import in_app, load_app
from portal.core import db
from portal.mail import outbox, sending


@click.group("mail")
def mail_group() -> None:
    """The outbox."""


@mail_group.command("send")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 10000))
@click.option(
    "--loop",
    "--watch",
    "loop",
    is_flag=True,
    help="Keep sending emails and webhooks every PORTAL_MAIL_SEND_INTERVAL seconds "
    "until stopped (portal serve runs this beside its workers).",
)
def mail_send(batch: int, loop: bool) -> None:
    """Send what is due, once. SMTP trouble is recorded per message, and exits 0."""
    from portal.mail import delivery  # the loop's module: imported only when sending

    if loop:
        app = load_app()
        try:
            delivery.run_forever(app)
        finally:
            app.extensions["portal.engine"].dispose()
        return
    with in_app() as app:
        if not app.config.get("MAIL_SERVER"):
            click.echo(
                "No SMTP server configured (PORTAL_MAIL_SERVER): messages stay in the "
                "outbox; `portal mail outbox` shows them."
            )
            return
        delivery.prepare(app)
        total = sending.Report()
        while True:
            report = sending.deliver_due(app, db.session(), batch)
            total.sent += report.sent
            total.retrying += report.retrying
            total.failed += report.failed
            total.errors += report.errors
            # Stop after a pass with trouble: retries wait for their time.
            if report.attempted < batch or report.retrying or report.failed:
                break
        click.echo(f"sent {total.sent}, to retry {total.retrying}, failed {total.failed}")
        for error in sorted(set(total.errors))[:10]:
            click.echo(f"  {error}")


@mail_group.command("outbox")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def mail_outbox(limit: int) -> None:
    """Show the messages not sent yet, with their text."""
    with in_app():
        found = outbox.pending(db.session(), limit)
        if not found:
            click.echo("The outbox is empty.")
        for message in found:
            click.echo(
                f"--- {message.id}  {message.status.value}  attempts {message.attempts}"
                + (f"  last error: {message.last_error}" if message.last_error else "")
            )
            click.echo(f"To: {message.to_address}\nSubject: {message.subject}\n")
            click.echo(message.text_body or "(body removed)")
