"""Flask extensions, created unbound and attached in ``create_app``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_mail import Mail
from flask_wtf.csrf import CSRFProtect

from portal import translations

babel = Babel()
csrf = CSRFProtect()
mail = Mail()
#: No default limits: each sign-in or form route names its own.
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def init_app(app: Flask, locales: Path) -> None:
    app.config.setdefault(
        "BABEL_TRANSLATION_DIRECTORIES", str(app.config.get("LOCALES_DIR") or locales)
    )
    from portal.i18n import select_locale, select_timezone

    # Compile catalogs whose .mo is missing or older than the .po; warn if a folder is missing.
    translations.prepare(app)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)
    translations.forget_loaded(babel)
    processors = list(app.template_context_processors[None])
    csrf.init_app(app)
    # Flask-WTF's context processor would put its ``csrf_token`` over the template global that
    # ``security`` sets, and costs every render a call: the global alone is enough.
    app.template_context_processors[None] = processors
    mail.init_app(app)
    limiter.init_app(app)
    _limit_pages_only(app)


#: The blueprints whose routes declare limits (sign-in forms).
LIMITED_BLUEPRINTS = ("pages", "dashboard")


#: Every limit is declared for form posts (``methods=["POST"]``): requests with these methods
#: have none to check or count.
UNLIMITED_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _limit_pages_only(app: Flask) -> None:
    """Run Flask-Limiter's request hooks for the HTML blueprints' form posts only.

    Every limit is declared on a page or dashboard route, for POST. The hooks look for limits
    even where there are none: they cost the partner API (which partners' tools poll) about a
    tenth of a millisecond per request, and every page view about as much, for nothing.
    """
    registries: list[tuple[Any, bool]] = [
        (app.before_request_funcs, False),
        (app.after_request_funcs, True),
        (app.teardown_request_funcs, False),
    ]
    for registry, passes_response in registries:
        hooks: list[Any] = registry.get(None, [])
        for hook in [h for h in hooks if _belongs_to_limiter(h)]:
            hooks.remove(hook)
            for blueprint in LIMITED_BLUEPRINTS:
                registry.setdefault(blueprint, []).append(_posts_only(hook, passes_response))


def _posts_only(hook: Callable[..., Any], passes_response: bool) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        if request.method in UNLIMITED_METHODS:
            return args[0] if passes_response else None
        return hook(*args)

    return run


def _belongs_to_limiter(hook: Any) -> bool:
    return getattr(hook, "__self__", None) is limiter or limiter in getattr(hook, "args", ())
