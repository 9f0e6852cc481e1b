"""Customer pages (HTML). The invitation link lands here."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from flask.typing import ResponseReturnValue

from portal import db, invitations
from portal.invitations import LinkSettings

bp = Blueprint("pages", __name__)

#: HTTP status of each landing page: the link is bad or used up, but none of them is a 5xx.
_LANDING_STATUS = {
    "valid": 200,
    "accepted": 200,
    "expired": 410,
    "withdrawn": 410,
    "replaced": 410,
    "invalid": 404,
}


@bp.get("/invite/<path:token>")
def invite(token: str) -> ResponseReturnValue:
    """Check the link and show the sign-in page. A GET only records the first opening: mail
    scanners open links too."""
    session = db.session()
    landing = invitations.follow(session, LinkSettings.from_config(current_app.config), token)
    session.commit()
    invitation = landing.invitation
    context = {}
    if invitation is not None and landing.state != "invalid":
        customer = invitation.customer
        context = {
            "partner_name": customer.partner.name,
            "company_name": customer.company_name,
            "user_name": customer.credential.user_name if customer.credential else "",
        }
    return (
        render_template(f"invite/{landing.state}.html", token=token, **context),
        _LANDING_STATUS[landing.state],
    )
