"""What the dashboard shows for the domain's states, statuses, event kinds and problems, in the
page's language."""

from __future__ import annotations

from flask import g
from flask_babel import format_number, gettext

from portal.core.errors import InvalidFields, Problem, ProblemCode
from portal.core.models import (
    EventKind,
    InvitationStatus,
    Progress,
    WebhookDelivery,
    WebhookStatus,
)
from portal.domain import invitations, reports, webhooks


def _(message: str) -> str:
    """gettext, typed: the dashboard's texts share the customer pages' translations."""
    return str(gettext(message))


def state_name(state: str) -> str:
    """A customer's state as the partner reads it (translated once per request: a list shows
    fifty of them)."""
    names: dict[str, str] | None = g.get("state_names")
    if names is None:
        names = g.state_names = {
            Progress.NOT_INVITED: _("Not invited"),
            Progress.INVITED: _("Invited"),
            Progress.OPENED: _("Link opened"),
            Progress.SIGNED_IN: _("Signed in"),
            Progress.ACCEPTED: _("Accepted"),
            Progress.ATTESTED: _("Attested"),
            reports.EXPIRED: _("Invitation expired"),
        }
    return names.get(state, state)


def request_state_name(state: str) -> str:
    """A personal relationship request's state (``relationship_requests.state``)."""
    names: dict[str, str] = {
        "created": _("Not sent"),
        "queued": _("Waiting to be sent"),
        "sent": _("Delivered to the mail server"),
        "failed": _("Delivery failed"),
        "opened": _("Link opened"),
        "accepted": _("Accepted"),
        "declined": _("Declined"),
        "expired": _("Expired"),
        "withdrawn": _("Withdrawn"),
    }
    return names.get(state, state)


def delivery_name(status: str) -> str:
    """An invitation's status (see ``invitations.status``) as the partner reads it."""
    names: dict[str, str] = {
        InvitationStatus.CREATED: _("Not sent"),
        InvitationStatus.QUEUED: _("Waiting to be sent"),
        InvitationStatus.SENDING: _("Being sent"),
        InvitationStatus.SENT: _("Delivered to the mail server"),
        InvitationStatus.FAILED: _("Delivery failed"),
        InvitationStatus.CANCELLED: _("Not sent (cancelled)"),
        InvitationStatus.REVOKED: _("Withdrawn"),
        InvitationStatus.SUPERSEDED: _("Replaced by a newer invitation"),
        InvitationStatus.EXPIRED: _("Expired"),
    }
    return names.get(status, status)


def moment_name(kind: str) -> str:
    """A timeline entry's kind (an event kind or an email outcome) as the partner reads it."""
    names: dict[str, str] = {
        EventKind.CUSTOMER_CREATED: _("Customer created"),
        EventKind.INVITATION_CREATED: _("Invitation created"),
        reports.INVITATION_FIRST_SENT: _("Invitation sent"),
        EventKind.INVITATION_RESENT: _("Invitation sent again"),
        EventKind.INVITATION_REVOKED: _("Invitation withdrawn"),
        EventKind.INVITATION_OPENED: _("Invitation link opened"),
        EventKind.CUSTOMER_SIGNED_IN: _("Customer signed in"),
        EventKind.CUSTOMER_PASSWORD_CHANGED: _("Customer chose a password"),
        EventKind.AGREEMENT_ACCEPTED: _("Customer accepted"),
        EventKind.AGREEMENT_ATTESTED: _("Partner attested acceptance"),
        EventKind.RELATIONSHIP_BEGAN: _("Customer accepted the relationship"),
        EventKind.RELATIONSHIP_REMOVED: _("Customer removed the relationship"),
        EventKind.RELATIONSHIP_DECLINED: _("Customer declined the relationship request"),
        reports.MailOutcome.SENT: _("Email delivered to the mail server"),
        reports.MailOutcome.FAILED: _("Email delivery failed"),
    }
    return names.get(kind, kind)


def webhook_event_name(event_type: str) -> str:
    """What a webhook's event type tells (``webhooks.EVENT_TYPES``), as the timeline says it;
    nothing for a type it does not know (its name is shown beside it anyway)."""
    kinds: dict[str, str] = {name: kind for kind, name in webhooks.FROM_EVENTS.items()}
    kinds[webhooks.INVITATION_DELIVERED] = reports.MailOutcome.SENT
    kinds[webhooks.INVITATION_FAILED] = reports.MailOutcome.FAILED
    return moment_name(kinds[event_type]) if event_type in kinds else ""


def webhook_status_name(delivery: WebhookDelivery) -> str:
    """A webhook delivery's status as the partner reads it."""
    if delivery.status is WebhookStatus.QUEUED and delivery.attempts:
        # Translators: a webhook delivery's status: an attempt failed, another one will follow.
        return _("Failed, will be tried again")
    names: dict[str, str] = {
        WebhookStatus.QUEUED: _("Waiting to be sent"),
        WebhookStatus.SENDING: _("Being sent"),
        # Translators: a webhook delivery's status: the partner's system answered that it got it.
        WebhookStatus.DELIVERED: _("Delivered"),
        WebhookStatus.FAILED: _("Delivery failed"),
    }
    return names.get(delivery.status, delivery.status)


def field_problem(problem: Problem) -> str:
    """A field's problem from the domain, said in the page's language."""
    words = {
        ProblemCode.REQUIRED: _("This field is required."),
        ProblemCode.TOO_LONG: _("This is too long."),
        ProblemCode.CONTROL: _("Use one line, without special characters."),
        ProblemCode.NOT_EMAIL: _("Enter a valid email address."),
        ProblemCode.NOT_DOMAIN: _("Enter a domain name such as contoso.example."),
        ProblemCode.UNKNOWN_COUNTRY: _("Choose a country."),
        ProblemCode.GERMANY_ONLY: _("Only customers in Germany can need this amendment."),
        ProblemCode.NOT_URL: str(
            gettext(
                # Translators: example is a web address such as https://hooks.example.com/portal.
                "Enter an https:// address that can be reached from the internet, such as "
                "%(example)s, without spaces, a user name or a #fragment.",
                example="https://hooks.example.com/portal",
            )
        ),
    }
    return words.get(problem.code) or _("Check this field.")


def problems(error: InvalidFields) -> dict[str, str]:
    return {name: field_problem(problem) for name, problem in error.problems.items()}


def text_problem(error: invitations.TextRejected, request: bool = False) -> str:
    """Why an edited email was not sent; ``request``: a relationship request's, not an
    invitation's."""
    if error.problem is ProblemCode.NO_LINK and request:
        return str(
            gettext(
                # Translators: link is the partner's relationship request link (an https://
                # address).
                "Not sent: the email must contain the request link, %(link)s. Without it the "
                "company cannot accept.",
                link=error.link,
            )
        )
    if error.problem is ProblemCode.REQUIRED:
        return _("Not sent: the email is empty.")
    if error.problem is ProblemCode.TOO_LONG:
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
