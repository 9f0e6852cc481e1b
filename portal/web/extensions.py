"""Flask extensions, created unbound and attached in ``create_app``."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask_babel import Babel
from flask_mail import Mail
from flask_wtf.csrf import CSRFProtect

from portal.i18n import catalogs

babel = Babel()
csrf = CSRFProtect()
mail = Mail()


def init_app(app: Flask, locales: Path) -> None:
    app.config.setdefault(
        "BABEL_TRANSLATION_DIRECTORIES", str(app.config.get("LOCALES_DIR") or locales)
    )
    from portal.i18n.languages import select_locale, select_timezone

    # Compile catalogs whose .mo is missing or older than the .po; warn if a folder is missing.
    catalogs.prepare(app)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)
    catalogs.forget_loaded(babel)
    csrf.init_app(app)
    mail.init_app(app)
