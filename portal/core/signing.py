"""itsdangerous's timed serializer, signing exactly as before, at a fraction of the cost.

Every customer page signs or checks something: the session cookie, the form's CSRF token, the
invitation link. itsdangerous makes a new signer for each call, derives its key again each
time, and computes the HMAC in Python (its default digest is a Python function, so ``hmac``
cannot hand it to OpenSSL). Here a serializer keeps one signer per salt, each signer keeps its
derived keys, and the HMAC runs in one C call. Signatures are byte for byte the same, so links,
cookies and tokens signed before still verify, and Flask-WTF's own checks accept ours.

Measured in-process (``bench/tricks_bench.py``, CPU per request with itsdangerous's own
serializer instead): the invitation landing page, which checks a link and signs a new session
and form token, about 5 % cheaper; a signed-in page, whose cookie and token are remembered
(``web/fastpath.py``), gains nothing measurable.
"""

from __future__ import annotations

import hmac
from typing import Any

from itsdangerous import Serializer, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.signer import HMACAlgorithm, Signer


class _HMAC(HMACAlgorithm):
    """The same HMAC, computed by ``hmac.digest`` with the digest named (OpenSSL's one call)."""

    def __init__(self, digest_method: Any) -> None:
        super().__init__(digest_method)
        self.name: str = digest_method().name

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return hmac.digest(key, value, self.name)


class TimedSigner(TimestampSigner):
    """itsdangerous's ``TimestampSigner`` that remembers its derived keys and uses ``_HMAC``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if type(self.algorithm) is HMACAlgorithm:
            self.algorithm = _HMAC(self.digest_method)
        self._derived: dict[bytes | None, bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        lookup = secret_key.encode() if isinstance(secret_key, str) else secret_key
        derived = self._derived.get(lookup)
        if derived is None:
            derived = self._derived[lookup] = super().derive_key(secret_key)
        return derived


class TimedSerializer(URLSafeTimedSerializer):
    """``URLSafeTimedSerializer`` with one ``TimedSigner`` per salt, made on first use (signers
    hold no state between calls), and without trying to compress first: a session cookie of a
    few ids or a CSRF token never gets shorter, and the try costs a zlib stream. ``loads`` reads
    both forms, so values signed compressed still work."""

    default_signer = TimedSigner

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signers: dict[str | bytes | None, Signer] = {}

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        signer = self._signers.get(salt)
        if signer is None:
            signer = self._signers[salt] = super().make_signer(salt)
        return signer

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))
