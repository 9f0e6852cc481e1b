"""``portal serve``: migrate, then serve with gunicorn; the port checked before anything is done."""

from __future__ import annotations

import click
from flask import Flask

from portal.cli.base import load_app
from portal.core import db, metrics

# --- serving ----------------------------------------------------------------------------------


def check_port(host: str, port: int) -> None:
    """Refuse a taken address before anything is done (migrations, demo data), saying how to
    pick another port."""
    from portal.web import server

    try:
        server.ensure_free(host, port)
    except server.CannotListen as exc:
        raise click.ClickException(
            f"{exc}; choose another port with --port, e.g. --port {_other(port)}"
        ) from exc


def _other(port: int) -> int:
    return port + 1 if port < 65535 else port - 1


def serve_app(
    app: Flask,
    host: str,
    port: int,
    workers: int | None,
    threads: int | None,
    deliver: bool = True,
) -> None:
    """Migrate, then serve. Callers run ``_check_port`` first, before they change anything."""
    from portal.web import server

    with app.app_context():
        db.upgrade(db.engine())
        db.engine().dispose()
    counts = metrics.prepare_multiprocess()
    try:
        server.run(
            app,
            host=host,
            port=port,
            workers=workers or app.config["SERVE_WORKERS"],
            threads=threads or app.config["SERVE_THREADS"],
            deliver=deliver,
        )
    except server.CannotListen as exc:  # taken since the check
        raise click.ClickException(
            f"{exc}; choose another port with --port, e.g. --port {_other(port)}"
        ) from exc
    finally:
        metrics.remove(counts)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes.")
@click.option("--threads", type=click.IntRange(1, 256), help="Threads per worker.")
@click.option(
    "--delivery/--no-delivery",
    default=True,
    show_default=True,
    help="Send the outbox from a process beside the workers: emails (when PORTAL_MAIL_SERVER "
    "is set) and webhooks; --no-delivery where senders run elsewhere "
    "(`portal mail send --watch`).",
)
def serve(host: str, port: int, workers: int | None, threads: int | None, delivery: bool) -> None:
    """Apply pending migrations, then serve with gunicorn."""
    check_port(host, port)
    serve_app(load_app(), host, port, workers, threads, deliver=delivery)
