"""Errors as answers: JSON in Partner Center's shape under ``/v1``, a page everywhere else."""

from __future__ import annotations

from flask import Flask, Response, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed

from portal.core.errors import (
    InternalError,
    InvalidBody,
    MethodNotAllowed,
    NotFound,
    PortalError,
    ServiceUnavailable,
    TooLarge,
    Unauthorized,
    UnsupportedMediaType,
)

_HTTP_ERRORS: dict[int, type[PortalError]] = {
    400: InvalidBody,
    401: Unauthorized,
    404: NotFound,
    405: MethodNotAllowed,
    413: TooLarge,
    415: UnsupportedMediaType,
}


#: Errors that get a page of their own (templates/error.html) outside the API.
_PAGE_ERRORS = {400, 403, 404, 405, 413, 429}


def _wants_json() -> bool:
    return request.path.startswith("/v1/") or request.path == "/v1"


def json_error(error: PortalError) -> Response:
    response = jsonify(error.to_json())
    response.status_code = error.status
    response.headers.update(error.headers())
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="portal"'
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(PortalError)
    def portal_error(error: PortalError) -> ResponseReturnValue:
        if _wants_json():
            return json_error(error)
        page = render_template(
            "error.html", code=error.status, name=error.error_name, message=error.message
        )
        return page, error.status, error.headers()

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> ResponseReturnValue:
        if not _wants_json():
            if error.code in _PAGE_ERRORS:
                return render_template("error.html", code=error.code), error.code
            return error
        status = error.code or 500
        named = _HTTP_ERRORS.get(status)
        if named is None:
            return json_error(InternalError()) if status >= 500 else error
        response = json_error(named())
        if isinstance(error, WerkzeugMethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(OperationalError)
    def database_unavailable(error: OperationalError) -> ResponseReturnValue:
        app.logger.warning("database unavailable: %s", error)
        if _wants_json():
            return json_error(ServiceUnavailable())
        return render_template("error.html", code=503), 503

    @app.errorhandler(InternalServerError)
    def internal_error(error: InternalServerError) -> ResponseReturnValue:
        if _wants_json():
            return json_error(InternalError())
        return render_template("error.html", code=500), 500
