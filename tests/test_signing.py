"""The faster serializer signs byte for byte as itsdangerous does, so old and new values mix."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
import time_machine
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from markupsafe import Markup

from portal.core import tokens
from portal.core.signing import TimedSerializer
from portal.web import security

OLD, NEW = "o" * 40, "n" * 40
UNSHORTENED = "9b1e5c0d2a7f4e8b6c3d1a0f5e9b2c7d4a8e6f1b"
FLASK_SESSION = {
    "salt": "cookie-session",
    "signer_kwargs": {"key_derivation": "hmac", "digest_method": hashlib.sha1},
}


@pytest.mark.parametrize("options", [{"salt": security.CSRF_SALT}, FLASK_SESSION])
def test_signatures_are_itsdangerous_own_and_verify_both_ways(options):
    ours = TimedSerializer([OLD, NEW], **options)
    stock = URLSafeTimedSerializer([OLD, NEW], **options)
    with time_machine.travel(datetime(2026, 5, 1, tzinfo=UTC), tick=False):
        # Values zlib cannot shorten: stock does not compress them either.
        for value in [UNSHORTENED, {"sid": "x", "csrf_token": "y"}, ["id", "nonce"]]:
            signed = ours.dumps(value)
            assert signed == stock.dumps(value)
            assert stock.loads(signed) == value
            assert ours.loads(signed) == value
        # A value stock compressed still loads; an old key still verifies; tampering fails.
        long_value = "z" * 400
        assert ours.loads(stock.dumps(long_value)) == long_value
        assert ours.loads(URLSafeTimedSerializer(OLD, **options).dumps("old")) == "old"
        signed = ours.dumps("v")
        with pytest.raises(BadSignature):
            ours.loads(signed[:-1] + ("A" if signed[-1] != "A" else "B"))
        with pytest.raises(BadSignature):
            TimedSerializer([NEW], salt="another").loads(signed)


def test_a_signer_made_once_per_salt_signs_with_the_newest_key():
    ours = TimedSerializer([OLD, NEW], salt="s")
    assert ours.make_signer() is ours.make_signer()
    assert ours.make_signer("other") is not ours.make_signer()
    with pytest.raises(BadSignature):
        URLSafeTimedSerializer(OLD, salt="s").loads(ours.dumps("x"))
    assert URLSafeTimedSerializer(NEW, salt="s").loads(ours.dumps("x")) == "x"


def test_invitation_links_are_signed_as_before_at_their_issue_time():
    class Stock(TimestampSigner):  # itsdangerous's own signer, dated as links are
        def get_timestamp(self) -> int:
            return 1_700_000_000

    stock = URLSafeTimedSerializer([OLD, NEW], salt=tokens.INVITATION_SALT, signer=Stock)
    token = tokens.invitation_token(NEW, [OLD], "an-id", "a-nonce", 1_700_000_000)
    assert token == stock.dumps(["an-id", "a-nonce"])


@pytest.mark.parametrize(
    "session",
    [
        {"sid": "abc", "csrf_token": "f" * 40, "lang": "de"},
        {"n": 1, "flag": True, "none": None, "x": 1.5, "ü": "é"},
        {},
        {" t": "a tuple's tag as the only key"},
        {"markup": Markup("<b>")},
        {"when": datetime(2026, 1, 2, tzinfo=UTC), "items": ("a", "b")},
    ],
)
def test_the_session_is_written_as_flasks_tagged_json_and_reads_back(app, session):
    interface = app.session_interface
    assert isinstance(interface, security.SessionInterface)
    with app.app_context():
        written = interface.serializer.dumps(session)
        assert written == TaggedJSONSerializer().dumps(session)
        assert interface.serializer.loads(written) == session
        stock = SecureCookieSessionInterface().get_signing_serializer(app)
        assert stock is not None
        assert stock.loads(interface.get_signing_serializer(app).dumps(session)) == session
