"""The invitation and self-acceptance portal for the customer agreement."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from portal.core import catalog as catalog_module
from portal.core import config, credentials, db
from portal.i18n import languages
from portal.web import auth, errorhandlers, extensions, fastpath, logs, ops, security

PACKAGE = Path(__file__).resolve().parent
#: The project's top level: in a checkout, ``templates/`` and ``locales/`` sit here, beside
#: ``portal/``; an installed wheel carries them inside the package (``portal/_build``).
ROOT = PACKAGE.parent


def _folder(name: str) -> Path:
    inside = PACKAGE / name
    return inside if inside.is_dir() else ROOT / name


TEMPLATES = _folder("templates")
LOCALES = _folder("locales")


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the portal. Raises ConfigError or CatalogError when it cannot work as configured."""
    app = fastpath.Portal(
        __name__,
        instance_path=os.environ.get("PORTAL_INSTANCE_PATH") or None,
        template_folder=str(TEMPLATES),
        static_folder="static",
    )
    config.load(app, overrides)
    logs.init_app(app)
    app.extensions["portal.catalog"] = catalog_module.load(app.config["AGREEMENT_CATALOG"])
    app.extensions["portal.peppers"] = [
        credentials.pepper(key)
        for key in [app.config["SECRET_KEY"], *reversed(app.config["SECRET_KEY_FALLBACKS"])]
    ]
    db.init_app(app)
    auth.init_app(app)
    extensions.init_app(app, LOCALES)
    errorhandlers.init_app(app)
    languages.init_app(app)
    security.init_app(app)
    fastpath.init_app(app)

    from portal.domain import resets, webhooks
    from portal.mail import delivery, sending

    app.extensions[delivery.PREPARERS] = [resets.prepare_for]
    app.extensions[delivery.PASSES] = [webhooks.send_pass]
    app.extensions[sending.OUTCOMES] = [webhooks.mail_outcomes]

    from portal.web.api import views as api
    from portal.web.dashboard import views as dashboard
    from portal.web.pages import views as pages

    app.url_map.converters["link"] = pages.LinkConverter
    # A link whose token holds an encoded slash stays one link (no redirect to another path).
    app.url_map.merge_slashes = False
    app.register_blueprint(api.bp)
    app.wsgi_app = api.SlashTolerantPaths(app.wsgi_app)  # type: ignore[method-assign]
    app.register_blueprint(pages.bp)
    app.register_blueprint(dashboard.bp)
    # The API authenticates with bearer keys and sets no cookie, so CSRF does not apply.
    extensions.csrf.exempt(api.bp)
    app.wsgi_app = fastpath.StatusShortcut(app, app.wsgi_app)  # type: ignore[method-assign]
    ops.init_app(app)  # last: its WSGI layer times everything else
    return app
