"""What the dashboard shows for the domain's states, statuses, event kinds and problems, in the
page's language."""

from __future__ import annotations

from flask import g
from flask_babel import format_number, gettext

from portal.core.errors import InvalidFields
from portal.domain import invitations, reports


def _(message: str) -> str:
    """gettext, typed: the dashboard's texts share the customer pages' translations."""
    return str(gettext(message))


def state_name(state: str) -> str:
    """A customer's state as the partner reads it (translated once per request: a list shows
    fifty of them)."""
    names: dict[str, str] | None = g.get("state_names")
    if names is None:
        names = g.state_names = {
            "not-invited": _("Not invited"),
            "invited": _("Invited"),
            "opened": _("Link opened"),
            "signed-in": _("Signed in"),
            "accepted": _("Accepted"),
            "attested": _("Attested"),
            reports.EXPIRED: _("Invitation expired"),
        }
    return names.get(state, state)


def delivery_name(status: str) -> str:
    """An invitation's status (see ``invitations.status``) as the partner reads it."""
    names = {
        "created": _("Not sent"),
        "queued": _("Waiting to be sent"),
        "sending": _("Being sent"),
        "sent": _("Delivered to the mail server"),
        "failed": _("Delivery failed"),
        "cancelled": _("Not sent (cancelled)"),
        "revoked": _("Withdrawn"),
        "superseded": _("Replaced by a newer invitation"),
        "expired": _("Expired"),
    }
    return names.get(status, status)


def moment_name(kind: str) -> str:
    """A timeline entry's kind (an event kind or an email outcome) as the partner reads it."""
    names = {
        "customer.created": _("Customer created"),
        "invitation.created": _("Invitation created"),
        "invitation.resent": _("Invitation sent again"),
        "invitation.revoked": _("Invitation withdrawn"),
        "invitation.opened": _("Invitation link opened"),
        "customer.signed_in": _("Customer signed in"),
        "customer.password_changed": _("Customer chose a password"),
        "agreement.accepted": _("Customer accepted"),
        "agreement.attested": _("Partner attested acceptance"),
        "email.sent": _("Email delivered to the mail server"),
        "email.failed": _("Email delivery failed"),
    }
    return names.get(kind, kind)


def field_problem(problem: str) -> str:
    """A field problem from the domain (English, for the API) said in the page's language."""
    if problem == "is required":
        return _("This field is required.")
    if problem.startswith("is longer than"):
        return _("This is too long.")
    if problem.startswith("contains control characters"):
        return _("Use one line, without special characters.")
    if problem.startswith("is not an email"):
        return _("Enter a valid email address.")
    if problem.startswith("is not a domain"):
        return _("Enter a domain name such as contoso.example.")
    if problem.startswith("is an unknown country"):
        return _("Choose a country.")
    if problem.startswith("applies only to customers in Germany"):
        return _("Only customers in Germany can need this amendment.")
    return _("Check this field.")


def problems(error: InvalidFields) -> dict[str, str]:
    return {name: field_problem(str(text)) for name, text in error.parameters.items()}


def text_problem(error: invitations.TextRejected) -> str:
    if error.problem is invitations.TextProblem.EMPTY:
        return _("Not sent: the email is empty.")
    if error.problem is invitations.TextProblem.TOO_LONG:
        return str(
            gettext(
                "Not sent: the email is longer than %(limit)s characters.",
                limit=format_number(invitations.MAX_TEXT),
            )
        )
    return str(
        gettext(
            # Translators: link is the customer's personal link (an https:// address).
            "Not sent: the email must contain the invitation link, %(link)s. Without it the "
            "customer cannot accept.",
            link=error.link,
        )
    )
