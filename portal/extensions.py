"""Flask extensions, created unbound and attached in ``create_app``."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_mail import Mail
from flask_wtf.csrf import CSRFProtect

babel = Babel()
csrf = CSRFProtect()
mail = Mail()
#: No default limits: each sign-in or form route names its own.
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def init_app(app: Flask, locales: Path) -> None:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(locales))
    babel.init_app(app)
    csrf.init_app(app)
    mail.init_app(app)
    limiter.init_app(app)
