"""What a translated page costs over the English one (target: at most 10% more).

Renders the customer pages in-process (Flask's test client: no network, no server, so the
difference is the rendering itself) for customers who read English, German, Japanese and Arabic,
interleaving the languages round by round so the noise of this shared machine hits all alike,
and prints each language's time per page as a ratio to English's.

    .venv/bin/python bench/locale_bench.py [--rounds 30] [--per-round 50]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine  # noqa: E402

from portal import create_app  # noqa: E402
from portal.core import db
from portal.core.models import PartnerKind  # noqa: E402
from portal.domain import (
    customers,
    invitations,
    partners,  # noqa: E402
)

LANGUAGES = {
    "en": ("US", "en-US"),
    "de": ("DE", "de-DE"),
    "ja": ("JP", "ja-JP"),
    "ar": ("AE", "ar-AE"),
}
PAGES = ["/agreement", "/signin", "/nowhere"]


def _signed_in_client(app: Any, country: str, culture: str) -> tuple[Any, str]:
    """A test client signed in as a new customer of ``culture``, and its landing page path."""
    with app.app_context():
        session = db.session()
        partner = partners.create_partner(session, "Fabrikam", PartnerKind.DIRECT)
        created = customers.create_customer(
            session,
            partner,
            customers.NewCustomer(
                domain=f"bench-{culture.lower()}.example.test",
                company_name="Contoso Ltd",
                email="billing@contoso.example.test",
                culture=culture,
                language=culture.split("-")[0],
                country=country,
                first_name="Tania",
                last_name="Carr",
            ),
            app.extensions["portal.catalog"],
            app.extensions["portal.peppers"][0],
            actor="bench",
        )
        issued = invitations.create(
            session,
            created.customer,
            invitations.Options(),
            links=invitations.LinkSettings.from_config(app.config),
            pepper=app.extensions["portal.peppers"][0],
            locales=["en", "de", "ja", "ar"],
            actor="bench",
        )
        session.commit()
        link = "/invite/" + issued.url.rsplit("/invite/", 1)[1]
        user_name, password = issued.user_name, issued.password
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = culture
    page = client.get(link).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if token is None or 'name="user_name"' not in page:
        raise SystemExit("the landing page has no sign-in form")
    client.post(
        "/signin",
        data={
            "csrf_token": token.group(1),
            "user_name": user_name,
            "password": password,
        },
    )
    page = client.get("/password").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if token is None:
        raise SystemExit("the password page has no form")
    new = "correct horse battery staple"
    client.post("/password", data={"csrf_token": token.group(1), "password": new, "repeat": new})
    return client, link


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=50, help="renders per page per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as instance:
        app = create_app(
            {
                "SECRET_KEY": "bench-" + "x" * 40,
                "DATABASE_URL": f"sqlite:///{instance}/bench.db",
                "BASE_URL": "https://portal.example.test",
            }
        )
        with app.app_context():
            db.upgrade(db.engine())
        clients = {
            language: _signed_in_client(app, country, culture)
            for language, (country, culture) in LANGUAGES.items()
        }
        for client, _link in clients.values():  # warm up: templates, catalogs, caches
            for path in PAGES:
                client.get(path)
        timings: dict[str, list[float]] = {language: [] for language in LANGUAGES}
        for _ in range(args.rounds):
            for language, (client, _link) in clients.items():
                start = time.perf_counter()
                for _ in range(args.per_round):
                    for path in PAGES:
                        response = client.get(path)
                        assert response.status_code in (200, 404), (path, response.status_code)
                elapsed = time.perf_counter() - start
                timings[language].append(elapsed / (args.per_round * len(PAGES)))
    english = statistics.median(timings["en"])
    print(f"machine: {machine()}")
    print(f"pages: {', '.join(PAGES)}; {args.rounds} rounds x {args.per_round} renders each")
    print(f"{'language':10} {'ms/page (median)':>18} {'vs English':>11}")
    worst = 0.0
    for language, values in timings.items():
        median = statistics.median(values)
        ratio = median / english
        worst = max(worst, ratio)
        print(f"{language:10} {median * 1000:18.3f} {ratio:11.3f}")
    verdict = "met" if worst <= 1.10 else "MISSED"
    print(f"target: a translated page costs at most 1.10 x English: {verdict} (worst {worst:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
