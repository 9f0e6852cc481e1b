"""Named errors. Domain code raises them; the edges turn them into JSON or pages.

Each carries the Partner Center error fields (``code``, ``errorName``, ``description``,
``isRetryable``, ``parameters``) and the HTTP status the API answers with. The codes are listed in
the OpenAPI document; ``portal.web.errorhandlers`` turns them into answers.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


class ProblemCode(enum.StrEnum):
    """What is wrong with a value, whatever the words: each edge says it in its own (the API in
    English, the pages in the reader's language)."""

    REQUIRED = "required"
    TOO_SHORT = "too-short"
    TOO_LONG = "too-long"
    #: A line break or another character a single line of text may not hold.
    CONTROL = "control"
    NOT_EMAIL = "not-email"
    NOT_DOMAIN = "not-domain"
    NOT_PHONE = "not-phone"
    NOT_CULTURE = "not-culture"
    NOT_LANGUAGE = "not-language"
    UNKNOWN_COUNTRY = "unknown-country"
    #: The secrecy amendment, asked for a customer outside Germany.
    GERMANY_ONLY = "germany-only"
    NOT_DATE = "not-date"
    IN_FUTURE = "in-future"
    #: A JSON value of the wrong type, or bytes that are not text.
    WRONG_TYPE = "wrong-type"
    #: Not one of the values this field takes (an agreement type, a template id).
    NOT_ONE_OF = "not-one-of"
    #: An agreement type partners may no longer attest (the catalog's ``retired`` rows).
    RETIRED = "retired"
    #: A new password and its repetition differ.
    MISMATCH = "mismatch"
    SAME_AS_USER = "same-as-user"
    SAME_AS_CURRENT = "same-as-current"
    #: An invitation's edited email without the invitation's link.
    NO_LINK = "no-link"
    WRONG_CURRENT = "wrong-current"
    #: Not a URL a webhook may be sent to (scheme, host, a private address).
    NOT_URL = "not-url"


@dataclass(frozen=True)
class Problem:
    """A field's problem: its code, and the English sentence the API answers with."""

    code: ProblemCode
    #: Completes the field's name: "is longer than 200 characters".
    text: str

    def __str__(self) -> str:
        return self.text


class PortalError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[int] = 10000
    error_name: ClassVar[str] = "BadRequest"
    description: ClassVar[str] = "The request cannot be processed."
    retryable: ClassVar[bool] = False

    def __init__(self, description: str | None = None, **parameters: Any) -> None:
        self.message = description or self.description
        self.parameters = {key: str(value) for key, value in parameters.items()}
        super().__init__(self.message)

    def headers(self) -> dict[str, str]:
        """Headers the answer carries besides the body (``Retry-After`` for a 429)."""
        return {}

    def to_json(self) -> dict[str, Any]:
        """Partner Center's error body: the SDKs read ``code`` and ``description``; its current
        format adds ``message`` (the same text) and ``errorMessageExtended``
        (``InternalErrorCode=<code>``, as Partner Center writes it)."""
        return {
            "code": self.code,
            "errorName": self.error_name,
            "description": self.message,
            "message": self.message,
            "errorMessageExtended": f"InternalErrorCode={self.code}",
            "isRetryable": self.retryable,
            "parameters": self.parameters,
        }


class InvalidBody(PortalError):
    code = 10001
    error_name = "InvalidRequestBody"
    description = "The request body is not a JSON object."


class InvalidFields(PortalError):
    """Some fields are missing, of the wrong type or unacceptable; ``parameters`` names each."""

    code = 10002
    error_name = "InvalidFields"
    description = "Some fields are missing or invalid."

    def __init__(self, fields: Mapping[str, Problem]) -> None:
        #: Each field's problem, for an edge to put in its own words.
        self.problems = dict(fields)
        listed = "; ".join(f"{name}: {problem}" for name, problem in fields.items())
        super().__init__(f"Some fields are missing or invalid. {listed}", **fields)


class InvalidParameter(PortalError):
    code = 10003
    error_name = "InvalidQueryParameter"
    description = "A query parameter is invalid."


class ControlCharacter(InvalidParameter):
    """NUL in the address, a query parameter or a form field: no text of the portal holds one."""

    error_name = "ControlCharacterInRequest"
    description = "Text in a request cannot contain control characters such as NUL."


class DateAgreedInFuture(InvalidFields):
    code = 10004
    error_name = "DateAgreedInFuture"


class Unauthorized(PortalError):
    status = 401
    code = 10401
    error_name = "Unauthorized"
    description = "A valid API key is required: send 'Authorization: Bearer <api key>'."


class AttestationNotAllowed(PortalError):
    status = 403
    code = 10403
    error_name = "AttestationNotAllowed"
    description = (
        "Indirect resellers may not attest customer acceptance. Ask your indirect provider to "
        "attest, or invite the customer to accept directly."
    )


class NotFound(PortalError):
    status = 404
    code = 10404
    error_name = "NotFound"
    description = "The resource was not found."


class CustomerNotFound(NotFound):
    """Unknown, or not visible to this partner: the same answer for both."""

    error_name = "CustomerNotFound"
    description = "No customer with this id was found."


class TemplateNotFound(NotFound):
    error_name = "AgreementTemplateNotFound"
    description = "No agreement template with this id exists (templateIds are case-sensitive)."


class NoDocuments(NotFound):
    error_name = "AgreementDocumentNotFound"
    description = "This agreement template publishes no regional documents."


class MethodNotAllowed(PortalError):
    status = 405
    code = 10405
    error_name = "MethodNotAllowed"
    description = "This method is not allowed on this resource."


class DomainTaken(PortalError):
    status = 409
    code = 10409
    error_name = "DomainAlreadyExists"
    description = (
        "A customer with this domain already exists. To serve it, send it your relationship "
        "request link (GET /v1/customers/relationshiprequests)."
    )


class AttestationExists(PortalError):
    status = 409
    code = 600061
    error_name = "PartnerConfirmedAgreementAlreadyExists"
    description = "A partner confirmed agreement already exists for the customer."


class RequestIdReused(PortalError):
    status = 409
    code = 10420
    error_name = "RequestIdReused"
    description = (
        "This MS-RequestId was already used for a different request (another method, path or "
        "body). A retry must repeat the request exactly; a new request needs a new MS-RequestId."
    )


class RequestInProgress(PortalError):
    status = 409
    code = 10421
    error_name = "RequestInProgress"
    description = (
        "A request with this MS-RequestId is still being processed. Retry shortly for its answer."
    )
    retryable = True

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class TooLarge(PortalError):
    status = 413
    code = 10413
    error_name = "RequestEntityTooLarge"
    description = "The request body is larger than the portal accepts."


class UnsupportedMediaType(PortalError):
    status = 415
    code = 10415
    error_name = "UnsupportedMediaType"
    description = "The request body must be JSON, sent with 'Content-Type: application/json'."


class ServiceUnavailable(PortalError):
    status = 503
    code = 10503
    error_name = "ServiceUnavailable"
    description = "The portal cannot reach its database just now. Try again shortly."
    retryable = True


class InternalError(PortalError):
    status = 500
    code = 10500
    error_name = "InternalError"
    description = "Something went wrong on our side; nothing was changed. Try again."
    retryable = True


#: Partner Center's answer to a purchase for a customer who has not accepted.
AGREEMENT_REQUIRED_CODE = 13605
AGREEMENT_REQUIRED_DESCRIPTION = (
    "Either a partner confirmation of the customer acceptance of the Microsoft Customer Agreement "
    "must be provided or the customer must accept the Microsoft Customer Agreement before you can "
    "complete this purchase."
)
