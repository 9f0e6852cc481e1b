"""The dashboard's customer list with 1,000,000 customers in PostgreSQL, against a bare Flask app.

Run by hand from the project folder (seeding about 5 minutes on 2 cores, measuring about 5):

    .venv/bin/python bench/dashboard_bench.py [--customers 1000000] [--other-customers 100000]
        [--shared 30] [--resellers 0] [--requests 200] [--clients 1] [--max-seconds 30]
        [--cases NAME,...] [--no-explain] [--schema NAME] [--keep]
        [--database-url postgresql://root@127.0.0.1:5432/test]

Target (from the issue): the customer list with 1,000,000 customers in PostgreSQL answers a page
in **under 100 ms p95**.

What it does, in one run:

1. makes a schema of its own in the PostgreSQL database of ``--database-url`` (dropped at the end
   unless ``--keep``; ``--schema NAME`` names it, and reuses it without seeding when it already
   holds a seeded benchmark database, e.g. one kept by an earlier ``--keep``), migrates it with
   the project's Alembic migrations (``portal.core.db.upgrade``), creates the partner, a second
   partner and three more (``portal.partners.create_partner``, country ``DE``; with
   ``--resellers``, the partner is an indirect provider with that many resellers) and a
   dashboard user of the partner (``portal.users.create_user``);
2. seeds on the server (``INSERT ... SELECT ... FROM generate_series``; a temporary table holds
   each customer's story for the statements after it): ``--customers`` customers created by the
   partner (split evenly with its resellers, if any) and ``--other-customers`` by the second,
   created over three years, denser towards now, a tenth of them on the hour (imports, so ties);
   each gets its creator's relationship (``customer_relationships``, as ``relationships.new``
   makes it: began when the customer was created), whose ``progress`` covers every step (15 %
   not invited, 20 % invited, 5 % opened, 5 % signed in, 40 % accepted, 15 % attested, before
   sharing) with its ``progress_at``; the creator's invitations (30 days of validity, the bodies
   of a real invitation email rendered by ``portal.invitations.render``) for everyone past "not
   invited" but most of the attested, a second one (the first superseded, its bodies emptied)
   for 15 % of the waiting ones, and the relationship's ``invitation_expires_at`` from the
   current one (as ``invitations.issue`` keeps it, so most older invitations are expired).
   ``--shared`` percent of all customers (default 30; drawn from the countries the partners'
   region lets them serve, ``portal.core.regions``) have two or three partners: they accepted
   one or two relationship requests (60 % of those 1, 40 % 2; the first with the other of the
   two partners in 60 % of cases, else one of the three more), began after the customer was
   created, 5 % removed by the customer since. So the partner's list holds customers the second
   partner created, and the other way round. Accepting a request accepts the agreement
   (``relationship_requests.accept``): every relationship of a shared customer is accepted.
   Acceptance evidence carries ``partner_id``: the customer's own acceptance that of the
   partner it came through (the creator's invitation, or the first request), the creator's
   attestations the creator's. The non-unique indexes of those tables are dropped before the
   load and rebuilt after it from their own definitions (``pg_get_indexdef``, checked
   afterwards); then ``VACUUM ANALYZE``;
3. starts ``portal serve`` on that schema (real gunicorn, its default workers and threads) and
   ``baseline_server.py`` (``portal.server.run`` with the same settings; its constant HTML page,
   ``GET /agreement``, is made the size of the customer list's first page); signs in to the
   dashboard over HTTP like a browser (CSRF token from the sign-in form, the session cookie kept);
4. measures ``GET /dashboard/customers``: the first page; pages 2, 50 and 200 reached by following
   the "Next page" links; a cursor half-way down the list (about row 509,000 of the partner's
   relationships by ``(began_at, customer_id)``; made from the database as the link would be);
   the state filters ``accepted``, ``invited``, ``expired`` and ``link-opened`` (and page 10 of
   ``invited``); a search for a common company word and one for one company's name.
   Each case gets ``--requests`` requests from ``--clients`` keep-alive connections, after a few
   unmeasured ones, but none started after ``--max-seconds`` (a page of seconds measures a few);
   the baseline gets as many next to it (before and after in turn, ABBA). Every
   response must be 200 and hold the case's marker (the table of customers, or the searched name);
5. prints for each case requests/s, p50/p95/p99/max, the server's and PostgreSQL's CPU per request
   (from ``/proc``; steadier than latencies on a shared machine), the baseline measured next to it
   and the ratios, and whether p95 < 100 ms; then ``EXPLAIN (ANALYZE, BUFFERS)`` of the queries
   ``portal.reports.customer_page`` runs for each case (captured from the code, so the plans are
   those of the statements the page really sends).

Exit status: 0 when every response was right (target met or not), 1 on a wrong response or any
failure. Only 127.0.0.1 is used; every subprocess and temporary file is removed at the end.
``PORTAL_SERVE_WORKERS`` / ``PORTAL_SERVE_THREADS`` reach both servers; every other ``PORTAL_*``
variable of the shell is ignored. Not a test: pytest collects only ``tests/``.
"""

from __future__ import annotations

import argparse
import html
import http.client
import re
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from _common import (  # bench/ is on sys.path
    BENCH,
    HOST,
    OTHER_LOAD_WARNING,
    VENV_BIN,
    Cleanup,
    Server,
    bench_environment,
    create_schema,
    machine,
    machine_busy_seconds,
    percentile,
    portal_version,
    run_guarded,
    server_cpu_seconds,
    start_server,
    wait_until_answers,
    with_schema,
)

TARGET_P95_MS = 100.0
DEFAULT_DATABASE_URL = "postgresql://root@127.0.0.1:5432/test"
PARTNER_NAME = "Dashboard Bench Partner"
OTHER_PARTNER_NAME = "Dashboard Bench Other Partner"
#: Partners that created no customer; they serve some of the shared ones.
ADDITIONAL_PARTNERS = 3
#: Every partner's country: relationship requests form only within its region.
PARTNER_COUNTRY = "DE"
USER_EMAIL = "admin@dashboard-bench.example"
USER_PASSWORD = "dashboard bench: correct horse battery"  # noqa: S105 - throwaway bench account
USER_AGENT = "dashboard-bench/1.0"
ACCEPT_LANGUAGE = "en-US,en;q=0.9"
#: Unmeasured requests per case and server before the measured ones.
WARMUP_REQUESTS = 5
#: ... or fewer, when they take longer than this (seconds).
WARMUP_SECONDS = 5.0
#: A response slower than this (seconds) is a failure (gunicorn's worker timeout is 60 s).
SLOW_TIMEOUT = 60.0
TABLE_MARKER = b'<table class="customers">'
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_NEXT = re.compile(r'<a rel="next" href="([^"]+)"')

# --- seeding -----------------------------------------------------------------------------------

#: Words of the generated company names; "Dental" is the common search (1 company in 25).
COMPANY_FIRST = [
    "Northwind", "Contoso", "Fabrikam", "Tailspin", "Adventure Works", "Litware", "Proseware",
    "Woodgrove", "Alpine Ski", "Blue Yonder", "Coho", "Fourth Coffee", "Graphic Design",
    "Humongous", "Lucerne", "Margie's", "Nod Publishers", "Southridge", "Trey Research",
    "Wide World", "Wingtip", "A. Datum", "Relecloud", "Bellows", "Consolidated", "Lamna",
    "Munson's", "Olympia", "Phoenix", "VanArsdel", "Baldwin", "Ernst", "Kuhn", "Meyer", "Schulz",
]  # fmt: skip
COMPANY_SECOND = [
    "Logistics", "Traders", "Dental", "Legal", "Accounting", "Bakery", "Clinic", "Consulting",
    "Engineering", "Foods", "Games", "Health", "Insurance", "Media", "Motors", "Pharmacy",
    "Realty", "Software", "Textiles", "Travel", "Winery", "Architects", "Bank", "Builders",
    "Catering",
]  # fmt: skip
COMPANY_SUFFIX = [
    "GmbH", "Ltd", "Inc.", "LLC", "SAS", "B.V.", "AB", "S.p.A.", "Pty Ltd", "KG", "AG",
    "Sp. z o.o.",
]  # fmt: skip
FIRST_NAMES = [
    "Anna", "Ben", "Chloé", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Kai",
    "Lena", "Mia", "Noah", "Olga", "Paul", "Quentin", "Rosa", "Sven", "Tanja", "Ugo", "Vera",
    "Wim", "Xenia", "Yusuf", "Zoé",
]  # fmt: skip
LAST_NAMES = [
    "Adams", "Becker", "Costa", "Dubois", "Eriksson", "Fischer", "García", "Hansen", "Ivanova",
    "Jensen", "Kowalski", "Lefèvre", "Müller", "Nowak", "Olsen", "Peeters", "Quinn", "Rossi",
    "Schmidt", "Tanaka", "Ueda", "Visser", "Wagner", "Young", "Zimmermann",
]  # fmt: skip
#: (culture, language, country, city)
LOCALES = [
    ("en-US", "en", "US", "Seattle"), ("de-DE", "de", "DE", "Berlin"),
    ("fr-FR", "fr", "FR", "Lyon"), ("en-GB", "en", "GB", "Leeds"),
    ("nl-NL", "nl", "NL", "Utrecht"), ("es-ES", "es", "ES", "Sevilla"),
    ("it-IT", "it", "IT", "Torino"), ("sv-SE", "sv", "SE", "Malmö"),
    ("pl-PL", "pl", "PL", "Kraków"), ("ja-JP", "ja", "JP", "Osaka"),
]  # fmt: skip


def _sql_array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _pick(values: list[str], random_column: str) -> str:
    """SQL: one of ``values``, chosen by a random number in [0, 1)."""
    return f"({_sql_array(values)})[1 + floor({random_column} * {len(values)})::int]"


#: Customers one partner created, made on the server. Bind parameters: partner, n, now, prefix.
CUSTOMERS_SQL = f"""
INSERT INTO customers (
    id, partner_id, created_at, company_name, domain, email, culture, language, country,
    address_first_name, address_last_name, address_line1, address_line2, city, state,
    postal_code, phone, contact_first_name, contact_last_name, contact_email, contact_phone,
    requires_secrecy_amendment)
SELECT
    gen_random_uuid()::text, :partner, s.created,
    s.first_word || ' ' || s.second_word || ' ' || s.g || ' ' || s.suffix,
    s.domain, 'billing@' || s.domain,
    (ARRAY[{", ".join(f"'{loc[0]}'" for loc in LOCALES)}])[s.loc],
    (ARRAY[{", ".join(f"'{loc[1]}'" for loc in LOCALES)}])[s.loc],
    (ARRAY[{", ".join(f"'{loc[2]}'" for loc in LOCALES)}])[s.loc],
    s.first_name, s.last_name, 'Main Street ' || (1 + s.g % 200), '',
    (ARRAY[{", ".join(f"'{loc[3]}'" for loc in LOCALES)}])[s.loc], '',
    lpad((s.g % 99991)::text, 5, '0'), '+1555' || lpad((s.g % 9999991)::text, 7, '0'),
    s.first_name, s.last_name,
    lower(translate(s.first_name, 'éèç', 'eec')) || '.'
        || lower(translate(s.last_name, 'éèçüí', 'eecui')) || '@' || s.domain,
    '',
    s.loc = 2 AND s.r3 < 0.05
FROM (
    SELECT
        t.*,
        lower(regexp_replace(t.first_word, '[^A-Za-z]', '', 'g')) || '-' || :prefix || t.g
            || '.example' AS domain,
        CASE WHEN t.g % 10 = 0 THEN date_trunc('hour', t.raw_created)
             ELSE t.raw_created END AS created
    FROM (
        SELECT
            g,
            CAST(:now AS timestamp) - interval '1095 days' * power(random(), 1.6)
                AS raw_created,
            random() AS r3,
            {_pick(COMPANY_FIRST, "random()")} AS first_word,
            {_pick(COMPANY_SECOND, "random()")} AS second_word,
            {_pick(COMPANY_SUFFIX, "random()")} AS suffix,
            {_pick(FIRST_NAMES, "random()")} AS first_name,
            {_pick(LAST_NAMES, "random()")} AS last_name,
            1 + floor(random() * {len(LOCALES)})::int AS loc
        FROM generate_series(1, :n) AS g
    ) AS t
) AS s
"""  # noqa: S608 - constants of this file only; the values are bind parameters

#: Each customer's story, one row per customer, a temporary table for the statements after it.
#: ``story``: how far its creator's dealings went (invitations are the creator's alone), with
#: ``first_at``/``second_at`` its invitations and ``story_at`` when it got that far. A shared
#: customer (one whose country the extra partners may serve, ``shared`` of all customers in all)
#: accepted one to two relationship requests (``extra1`` at ``began1``, ``extra2`` at
#: ``began2``): one of the candidates ``:pair_a`` (for customers of the partner and its
#: resellers: the second partner first, then the additional ones) or ``:pair_b`` (for the second
#: partner's: the partner first), the first of them with 60 % (of a list of four, the rest evenly),
#: 5 % of them removed by the customer later. Accepting a request accepts the agreement too
#: (``relationship_requests.accept``): ``accepted_at`` is the customer's own acceptance (through
#: the creator's invitation, or the first request if earlier), which every relationship follows.
#: Bind parameters: now, share (probability for a customer in an eligible country), eligible,
#: pair_a, pair_b, other.
STORY_SQL = """
CREATE TEMPORARY TABLE bench_story ON COMMIT DROP AS
SELECT v.*,
    CASE WHEN v.story = 'accepted' AND (v.began1 IS NULL OR v.story_at <= v.began1)
         THEN v.story_at ELSE v.began1 END AS accepted_at,
    CASE WHEN v.story = 'accepted' AND (v.began1 IS NULL OR v.story_at <= v.began1)
         THEN v.creator ELSE v.extra1 END AS accepted_through
FROM (
    SELECT x.*,
        CASE WHEN x.story = 'not-invited' THEN x.created_at
             WHEN x.first_at IS NULL
             THEN x.created_at + (CAST(:now AS timestamp) - x.created_at) * x.r3
             WHEN x.story = 'invited' THEN coalesce(x.second_at, x.first_at)
             WHEN x.story = 'link-opened' THEN x.opened_at
             ELSE x.opened_at + (CAST(:now AS timestamp) - x.opened_at) * x.r3 END AS story_at,
        CASE WHEN x.first_at IS NOT NULL
             THEN coalesce(x.second_at, x.first_at) + interval '30 days' END AS expires_at
    FROM (
        SELECT w.*,
            LEAST(coalesce(w.second_at, w.first_at) + interval '2 hours', CAST(:now AS timestamp))
                AS opened_at,
            CASE WHEN w.extra2 IS NOT NULL
                 THEN w.began1 + (CAST(:now AS timestamp) - w.began1) * w.rb2 END AS began2,
            CASE WHEN w.extra1 IS NOT NULL AND w.rm1 < 0.05
                 THEN w.began1 + (CAST(:now AS timestamp) - w.began1) * w.rm1 * 20 END
                AS removed1
        FROM (
            SELECT u.id, u.creator, u.creator_kind, u.creator_provider, u.created_at, u.domain,
                u.country, u.culture, u.company_name, u.contact_email, u.contact_first_name,
                u.contact_last_name, u.story, u.invited, u.r3, u.rb2, u.rm1, u.rm2,
                u.first_at,
                CASE WHEN u.invited AND u.story IN ('invited', 'link-opened', 'signed-in')
                          AND u.rs < 0.15
                     THEN u.first_at + (CAST(:now AS timestamp) - u.first_at) * u.rs2 END
                    AS second_at,
                CASE WHEN u.shared THEN u.cand[u.i1] END AS extra1,
                CASE WHEN u.shared AND u.rk < 0.4
                     THEN u.cand[u.i2 + CASE WHEN u.i2 >= u.i1 THEN 1 ELSE 0 END] END AS extra2,
                CASE WHEN u.shared
                     THEN u.created_at + (CAST(:now AS timestamp) - u.created_at) * u.rb1 END
                    AS began1
            FROM (
                SELECT t.*,
                    CASE WHEN t.r1 < 0.15 THEN 'not-invited' WHEN t.r1 < 0.35 THEN 'invited'
                         WHEN t.r1 < 0.40 THEN 'link-opened' WHEN t.r1 < 0.45 THEN 'signed-in'
                         WHEN t.r1 < 0.85 THEN 'accepted' ELSE 'attested' END AS story,
                    t.r1 >= 0.15 AND (t.r1 < 0.85 OR t.r2 < 0.3) AS invited,
                    CASE WHEN t.r1 >= 0.15 AND (t.r1 < 0.85 OR t.r2 < 0.3)
                         THEN t.created_at
                              + (CAST(:now AS timestamp) - t.created_at) * 0.05 * t.rf END
                        AS first_at,
                    t.country = ANY(CAST(:eligible AS varchar[])) AND t.rsh < :share AS shared,
                    CASE WHEN t.creator = CAST(:other AS varchar) THEN CAST(:pair_b AS varchar[])
                         ELSE CAST(:pair_a AS varchar[]) END AS cand,
                    CASE WHEN t.re1 < 0.6 THEN 1 ELSE 2 + floor(t.re2 * 3)::int END AS i1,
                    1 + floor(t.re3 * 3)::int AS i2
                FROM (
                    SELECT c.id, c.partner_id AS creator, p.kind AS creator_kind,
                        p.provider_id AS creator_provider, c.created_at, c.domain, c.country,
                        c.culture, c.company_name, c.contact_email, c.contact_first_name,
                        c.contact_last_name,
                        random() AS r1, random() AS r2, random() AS r3, random() AS rf,
                        random() AS rs, random() AS rs2, random() AS rsh, random() AS rk,
                        random() AS re1, random() AS re2, random() AS re3, random() AS rb1,
                        random() AS rb2, random() AS rm1, random() AS rm2
                    FROM customers AS c JOIN partners AS p ON p.id = c.partner_id
                ) AS t
            ) AS u
        ) AS w
    ) AS x
) AS v
"""

INVITATION_COLUMNS = """
    id, customer_id, nonce, created_at, expires_at, created_by, language, recipient,
    include_credentials, subject, text_body, html_body, revoked_at, superseded_at, opened_at
"""


#: Stands for the company in the subject of the email rendered for the seed.
COMPANY_PLACEHOLDER = "XCOMPANYX"
#: The company of the email rendered for the seed.
TYPICAL_COMPANY = "Northwind Traders 123456 GmbH"


def _invitation_values(n: int, bodies: str) -> str:
    """SQL: the values of invitation ``n`` (1 or 2) of a row of bench_story, up to html_body."""
    nonce = f"md5(id || '#{n}') || md5(id || '#{n}{n}')"
    at = "first_at" if n == 1 else "second_at"
    return (
        f"gen_random_uuid()::text, id, {nonce}, {at}, {at} + interval '30 days', "
        "'partner:' || creator, culture, contact_email, true, "
        f"replace(CAST(:subject AS text), '{COMPANY_PLACEHOLDER}', company_name), "
        # Superseding an invitation empties its bodies (invitations._close_open_invitations).
        # The same real email everywhere: the size is what matters to the database.
        f"CASE WHEN {bodies} THEN CAST(:text AS text) ELSE '' END, "
        f"CASE WHEN {bodies} THEN CAST(:html AS text) ELSE '' END"
    )


#: The creator's invitations (only the creator invites: ``invitations.inviter``): everyone's
#: first (superseded for some), then the second ones.
INVITATIONS_SQL = [
    f"""
INSERT INTO invitations ({INVITATION_COLUMNS})
SELECT {_invitation_values(1, "second_at IS NULL")}, NULL, second_at,
       CASE WHEN second_at IS NULL AND story IN ('link-opened', 'signed-in', 'accepted')
            THEN opened_at END
FROM bench_story WHERE invited
""",  # noqa: S608 - constants of this file only
    f"""
INSERT INTO invitations ({INVITATION_COLUMNS})
SELECT {_invitation_values(2, "true")}, NULL, NULL,
       CASE WHEN story IN ('link-opened', 'signed-in') THEN opened_at END
FROM bench_story WHERE second_at IS NOT NULL
""",  # noqa: S608 - constants of this file only
]


def bench_app() -> Any:
    """A portal app on an empty in-memory database, for what needs an app (the agreement catalog
    that checks a partner's country, the templates); it touches no benchmark data."""
    import secrets

    from portal import create_app

    return create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": secrets.token_urlsafe(48)})


def invitation_email() -> tuple[str, str, str]:
    """Subject, text and HTML of one real invitation email (``portal.invitations.render``,
    English, a typical customer), the subject with a stand-in for the company name. Every
    seeded invitation gets these bodies (but those superseded, emptied as the portal does): as
    big as the portal's own."""
    import secrets

    from portal.core.models import Customer, Partner, PartnerKind
    from portal.domain import invitations

    app = bench_app()
    customer = Customer(
        creator=Partner(name=PARTNER_NAME, kind=PartnerKind.DIRECT),
        company_name=TYPICAL_COMPANY,
        contact_first_name="Tanja",
        contact_last_name="Kowalski",
        country="US",
        culture="en-US",
        language="en",
    )
    with app.test_request_context():
        email = invitations.render(
            customer,
            "https://portal.bench.example/invite/" + secrets.token_urlsafe(120),
            "c-" + secrets.token_hex(4) + "@customers.bench.example",
            secrets.token_urlsafe(16),
            datetime.now(UTC) + timedelta(days=30),
            "en",
        )
    return email.subject.replace(TYPICAL_COMPANY, COMPANY_PLACEHOLDER), email.text, email.html


#: Every customer's relationship with the partner that created it (as ``relationships.new``
#: makes it: reseller, or indirect reseller with its provider), began when it was created, with
#: the creator's progress (accepted once the customer accepted, through anyone) and, as
#: ``invitations.issue`` keeps it, when its current invitation link expires; then the
#: relationships the shared customers began by accepting a request (``relationships.begin``:
#: accepted from the start), some removed since.
RELATIONSHIPS_SQL = [
    """
INSERT INTO customer_relationships
    (customer_id, partner_id, kind, provider_id, state, origin, began_at, accepted_by,
     removed_at, removed_by, progress, progress_at, invitation_expires_at)
SELECT id, creator,
       CASE WHEN creator_kind = 'indirect-reseller' THEN 'indirect-reseller' ELSE 'reseller' END,
       CASE WHEN creator_kind = 'indirect-reseller' THEN creator_provider END,
       'active', 'created', created_at, '', NULL, '',
       CASE WHEN accepted_at IS NOT NULL THEN 'accepted' ELSE story END,
       coalesce(accepted_at, story_at), expires_at
FROM bench_story
""",
    """
INSERT INTO customer_relationships
    (customer_id, partner_id, kind, provider_id, state, origin, began_at, accepted_by,
     removed_at, removed_by, progress, progress_at, invitation_expires_at)
SELECT s.id, e.partner_id, 'reseller', NULL,
       CASE WHEN e.removed_at IS NULL THEN 'active' ELSE 'removed' END, 'request', e.began_at,
       'admin@' || s.domain, e.removed_at,
       CASE WHEN e.removed_at IS NULL THEN '' ELSE 'customer:admin@' || s.domain END,
       'accepted', e.began_at, NULL
FROM bench_story AS s
CROSS JOIN LATERAL (VALUES
    (s.extra1, s.began1, s.removed1),
    (s.extra2, s.began2,
     CASE WHEN s.rm2 < 0.05 THEN s.began2 + (CAST(:now AS timestamp) - s.began2) * s.rm2 * 20 END)
) AS e (partner_id, began_at, removed_at)
WHERE e.partner_id IS NOT NULL
""",
]

#: The customer's own acceptance (its evidence the partner's it came through: the creator's
#: invitation or the request accepted with it) and the creators' attestations.
ACCEPTANCES_SQL = """
INSERT INTO agreement_acceptances (
    id, customer_id, agreement_type, template_id, version_rank, method, dedupe_key, first_name,
    last_name, email, phone, date_agreed, recorded_at, recorded_by, country, language,
    document_uri, ip_address, user_agent, partner_id)
SELECT gen_random_uuid()::text, s.id, 'MicrosoftCustomerAgreement',
       '117a488c-6a2d-4e4e-9c2b-0a5e1e6a0b3e', 0, a.method,
       CASE WHEN a.method = 'direct' THEN 'direct' ELSE md5(s.contact_email) END,
       s.contact_first_name, s.contact_last_name, s.contact_email, '', a.at, a.at,
       CASE WHEN a.method = 'direct' THEN 'cust-' || left(s.id, 8) ELSE s.creator END,
       s.country, s.culture, 'https://go.microsoft.com/fwlink/?LinkId=2143225',
       CASE WHEN a.method = 'direct' THEN '203.0.113.' || (1 + abs(hashtext(s.id)) % 250)
            ELSE '' END,
       CASE WHEN a.method = 'direct' THEN 'Mozilla/5.0 (bench)' ELSE '' END,
       a.partner_id
FROM bench_story AS s
CROSS JOIN LATERAL (VALUES
    ('direct', s.accepted_at, s.accepted_through),
    ('attested', CASE WHEN s.story = 'attested' THEN s.story_at END, s.creator)
) AS a (method, at, partner_id)
WHERE a.at IS NOT NULL
"""


#: Tables the bulk load fills; their plain indexes are rebuilt after it (see drop_plain_indexes).
SEEDED_TABLES = ["customers", "invitations", "agreement_acceptances", "customer_relationships"]

PLAIN_INDEXES_SQL = """
SELECT index.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index AS i
JOIN pg_class AS index ON index.oid = i.indexrelid
JOIN pg_class AS t ON t.oid = i.indrelid
JOIN pg_namespace AS n ON n.oid = t.relnamespace
WHERE n.nspname = current_schema() AND t.relname = ANY(:tables)
  AND NOT i.indisunique
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)
ORDER BY index.relname
"""


def drop_plain_indexes(connection: Any, tables: list[str]) -> list[str]:
    """Drop the non-unique indexes the migrations made on ``tables``; their exact definitions
    (``pg_get_indexdef``: same name, columns, kind) to run after the bulk load, as a restore of
    a dump does: one sorted build each is much faster than a million random inserts. Primary
    keys and unique constraints stay, so the load is still checked by them."""
    from sqlalchemy import text

    found = connection.execute(text(PLAIN_INDEXES_SQL), {"tables": tables}).all()
    for name, _definition in found:
        connection.execute(text(f'DROP INDEX "{name}"'))
    return [definition for _name, definition in found]


@dataclass
class Seeding:
    partner_id: str
    #: Customers on the partner's list (its active relationships, and its resellers').
    customers: int
    seconds: float
    #: Rows in the tables afterwards.
    counts: dict[str, int] = field(default_factory=dict)
    #: What each step took, in seconds.
    steps: list[tuple[str, float]] = field(default_factory=list)
    reused: bool = False


def engine_for(url: str) -> Any:
    from portal.core import db
    from portal.core.config import normalise_database_url

    return db.make_engine(normalise_database_url(url))


def schema_exists(admin_url: str, schema: str) -> bool:
    from sqlalchemy import text

    engine = engine_for(admin_url)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                {"s": schema},
            ).first()
        return found is not None
    finally:
        engine.dispose()


def listed_customers(session: Any, partner_id: str) -> Any:
    """SELECT (began_at, customer_id, company_name) of the partner's list, newest first: the
    relationships ``reports.customer_page`` shows it (``relationships.shown_to``)."""
    from sqlalchemy import select

    from portal.core.models import Customer, CustomerRelationship
    from portal.domain import relationships

    r = CustomerRelationship
    return (
        select(r.began_at, r.customer_id, Customer.company_name)
        .join(Customer, Customer.id == r.customer_id)
        .where(relationships.shown_to(partner_id, relationships.partner_ids(session, partner_id)))
        .order_by(r.began_at.desc(), r.customer_id.desc())
    )


def list_size(session: Any, partner_id: str) -> int:
    from sqlalchemy import func, select

    listed = listed_customers(session, partner_id).order_by(None).subquery()
    return int(session.scalar(select(func.count()).select_from(listed)) or 0)


def seeded_partner(url: str) -> Seeding | None:
    """The benchmark's partner in an already seeded schema, if there is one."""
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.orm import Session

    from portal.core.models import Partner, PartnerUser

    engine = engine_for(url)
    try:
        with Session(engine) as session:
            partner = session.scalars(select(Partner).where(Partner.name == PARTNER_NAME)).first()
            user = session.scalars(
                select(PartnerUser).where(PartnerUser.email == USER_EMAIL)
            ).first()
            if partner is None or user is None:
                return None
            return Seeding(partner.id, list_size(session, partner.id), 0.0, reused=True)
    except DBAPIError:
        return None  # not migrated, or by an older version of the benchmark
    finally:
        engine.dispose()


def seed(
    url: str, customers: int, other_customers: int, resellers: int = 0, shared: float = 0.3
) -> Seeding:
    """Migrate, create the partners and the user, then the customers and their story. With
    ``resellers``, the partner is an indirect provider and the customers it created are split
    evenly between it and that many resellers of its own (the provider's list shows them all).
    A ``shared`` fraction of all customers has one or two partners besides its creator (see
    ``STORY_SQL``): the partner's list holds customers the second partner created and the
    other way round."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from portal.core import db, regions
    from portal.core.models import PartnerKind, UserRole
    from portal.domain import partners, users

    started = time.monotonic()
    steps: list[tuple[str, float]] = []

    def step(name: str, since: float) -> float:
        now = time.monotonic()
        steps.append((name, now - since))
        print(f"  {name}: {now - since:.1f} s", flush=True)
        return now

    # Relationship requests form only within the partner's region (portal.core.regions): the
    # shared customers are drawn from the countries the partners may serve.
    rule = regions.load()
    eligible = sorted({loc[2] for loc in LOCALES if rule.may_serve(PARTNER_COUNTRY, loc[2])})
    share = min(1.0, shared * len(LOCALES) / max(1, sum(loc[2] in eligible for loc in LOCALES)))
    engine = engine_for(url)
    try:
        mark = time.monotonic()
        db.upgrade(engine)
        mark = step("migrations (portal.core.db.upgrade)", mark)
        with Session(engine) as session, bench_app().app_context():  # the catalog's countries
            kind = PartnerKind.INDIRECT_PROVIDER if resellers else PartnerKind.DIRECT
            partner = partners.create_partner(session, PARTNER_NAME, kind, country=PARTNER_COUNTRY)
            other = partners.create_partner(
                session, OTHER_PARTNER_NAME, PartnerKind.DIRECT, country=PARTNER_COUNTRY
            )
            additional = [
                partners.create_partner(
                    session, f"{PARTNER_NAME} {n}", PartnerKind.DIRECT, country=PARTNER_COUNTRY
                ).id
                for n in range(3, 3 + ADDITIONAL_PARTNERS)
            ]
            session.flush()
            owners = [(partner.id, customers - customers // (resellers + 1) * resellers, "a")]
            for number in range(1, resellers + 1):
                reseller = partners.create_partner(
                    session,
                    f"{PARTNER_NAME} reseller {number}",
                    PartnerKind.INDIRECT_RESELLER,
                    provider_id=partner.id,
                    country=PARTNER_COUNTRY,
                )
                session.flush()
                owners.append((reseller.id, customers // (resellers + 1), f"r{number}x"))
            users.create_user(
                session, partner, USER_EMAIL, USER_PASSWORD, UserRole.ADMIN_AGENT, "Bench Admin"
            )
            session.commit()
            partner_id, other_id = partner.id, other.id
        mark = step("partners and dashboard user", mark)
        now = datetime.now(UTC).replace(tzinfo=None)
        with engine.begin() as connection:
            connection.execute(text("SET LOCAL synchronous_commit = off"))
            connection.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
            connection.execute(text("SELECT setseed(0.2024)"))
            rebuild = drop_plain_indexes(connection, SEEDED_TABLES)
            for pid, n, prefix in [*owners, (other_id, other_customers, "b")]:
                if n:
                    connection.execute(
                        text(CUSTOMERS_SQL), {"partner": pid, "n": n, "now": now, "prefix": prefix}
                    )
            mark = step(f"customers ({customers:,} + {other_customers:,})", mark)
            connection.execute(
                text(STORY_SQL),
                {
                    "now": now,
                    "share": share,
                    "eligible": eligible,
                    "pair_a": [other_id, *additional],
                    "pair_b": [partner_id, *additional],
                    "other": other_id,
                },
            )
            mark = step("stories (a temporary table)", mark)
            subject, text_body, html_body = invitation_email()
            for statement in INVITATIONS_SQL:
                connection.execute(
                    text(statement), {"subject": subject, "text": text_body, "html": html_body}
                )
            mark = step("invitations", mark)
            for statement in RELATIONSHIPS_SQL:
                connection.execute(text(statement), {"now": now})
            mark = step(f"relationships ({shared:.0%} of the customers shared)", mark)
            connection.execute(text(ACCEPTANCES_SQL))
            mark = step("acceptances", mark)
            for definition in rebuild:
                connection.execute(text(definition))
            rebuilt = connection.execute(text(PLAIN_INDEXES_SQL), {"tables": SEEDED_TABLES}).all()
            if sorted(d for _n, d in rebuilt) != sorted(rebuild):
                raise RuntimeError(f"indexes differ after the rebuild: {rebuilt} != {rebuild}")
            mark = step(f"{len(rebuild)} indexes rebuilt", mark)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
        mark = step("VACUUM ANALYZE", mark)
        counts = {}
        with engine.connect() as connection:
            for table in SEEDED_TABLES:
                counts[table] = int(
                    connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
                )
            counts["customers the partner's list holds, not created by it"] = int(
                connection.execute(
                    text(
                        "SELECT count(*) FROM customer_relationships AS r "
                        "JOIN customers AS c ON c.id = r.customer_id "
                        "WHERE r.partner_id = :p AND r.state = 'active' AND c.partner_id <> :p"
                    ),
                    {"p": partner_id},
                ).scalar_one()
            )
            counts["of the partner's created customers, served by others too"] = int(
                connection.execute(
                    text(
                        "SELECT count(DISTINCT r.customer_id) FROM customer_relationships AS r "
                        "JOIN customers AS c ON c.id = r.customer_id "
                        "WHERE c.partner_id = :p AND r.partner_id <> :p AND r.state = 'active'"
                    ),
                    {"p": partner_id},
                ).scalar_one()
            )
        with Session(engine) as session:
            listed = list_size(session, partner_id)
        return Seeding(partner_id, listed, time.monotonic() - started, counts, steps)
    finally:
        engine.dispose()


# --- a browser over HTTP -----------------------------------------------------------------------


class Browser:
    """One keep-alive connection that keeps the session cookie; follows no redirect."""

    def __init__(self, port: int, cookie: str | None = None) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection(HOST, port, timeout=SLOW_TIMEOUT)
        self.cookie = cookie

    def go(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, str, bytes]:
        """Status, Location header and body."""
        headers = {
            "Accept": "text/html",
            "Accept-Language": ACCEPT_LANGUAGE,
            "User-Agent": USER_AGENT,
        }
        if self.cookie:
            headers["Cookie"] = f"session={self.cookie}"
        payload = None
        if form is not None:
            payload = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.conn.request(method, path, body=payload, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # The server closed an idle keep-alive connection: once more on a new one.
            self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=SLOW_TIMEOUT)
            self.conn.request(method, path, body=payload, headers=headers)
            response = self.conn.getresponse()
        body = response.read()
        for value in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            if name.strip() == "session":
                self.cookie = rest.split(";", 1)[0] or None
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
        return response.status, response.getheader("Location", ""), body

    def close(self) -> None:
        self.conn.close()


def sign_in(port: int) -> str:
    """Sign in to the dashboard like a browser; the session cookie."""
    browser = Browser(port)
    try:
        status, _, body = browser.go("GET", "/dashboard/signin")
        match = _CSRF.search(body.decode())
        if status != 200 or match is None:
            raise RuntimeError(f"GET /dashboard/signin: {status}, no CSRF token:\n{body[:500]!r}")
        form = {
            "csrf_token": match.group(1),
            "email": USER_EMAIL,
            "password": USER_PASSWORD,
            "next": "/dashboard/customers",
        }
        status, location, body = browser.go("POST", "/dashboard/signin", form)
        if status != 302 or not location.endswith("/dashboard/customers"):
            raise RuntimeError(f"POST /dashboard/signin: {status} {location!r}:\n{body[:500]!r}")
        status, _, body = browser.go("GET", "/dashboard/customers")
        if status != 200 or TABLE_MARKER not in body or browser.cookie is None:
            raise RuntimeError(f"GET /dashboard/customers after signing in: {status}")
        return browser.cookie
    finally:
        browser.close()


def next_link(body: bytes) -> str | None:
    match = _NEXT.search(body.decode())
    return html.unescape(match.group(1)) if match else None


# --- the cases ---------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    path: str
    marker: bytes
    #: What reports.customer_page gets for it (for EXPLAIN).
    params: dict[str, str]
    body_bytes: int = 0
    rows: int = 0


def params_of(path: str) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    raw = dict(parse_qsl(urlsplit(path).query))
    return {
        "query": raw.get("q", ""),
        "state": raw.get("state", ""),
        "cursor": raw.get("after", "")[:200],
    }


def follow(browser: Browser, path: str, pages: int) -> tuple[str, int]:
    """The path of page ``pages`` of a list, reached by following "Next page" from ``path``, and
    that page's number; the last page's when the list is shorter (a small ``--customers``)."""
    for page in range(1, pages):
        status, _, body = browser.go("GET", path)
        if status != 200:
            raise RuntimeError(f"page {page} of {path}: {status}")
        link = next_link(body)
        if link is None:
            print(f"the list has {page} pages only: measuring page {page} for page {pages}")
            return path, page
        path = link
    return path, pages


def list_path(**query: str) -> str:
    query = {k: v for k, v in query.items() if v}
    return "/dashboard/customers" + ("?" + urlencode(query) if query else "")


def build_cases(port: int, cookie: str, url: str, partner_id: str, total: int) -> list[Case]:
    from markupsafe import escape
    from sqlalchemy.orm import Session

    from portal.core.models import CustomerRelationship
    from portal.domain.reports import encode_cursor

    engine = engine_for(url)
    try:
        with Session(engine) as session:
            listed = listed_customers(session, partner_id)
            middle = session.execute(listed.offset(total // 2).limit(1)).one()
            rare = session.execute(listed.offset(total * 7 // 10).limit(1)).one().company_name
    finally:
        engine.dispose()
    # "Northwind Dental 123456 GmbH" -> "Northwind Dental 123456": one company's name.
    rare_query = re.sub(r"(\d+)\D*$", r"\1", rare)
    middle_cursor = encode_cursor(
        CustomerRelationship(customer_id=middle.customer_id, began_at=middle.began_at)
    )
    browser = Browser(port, cookie)
    try:
        cases = [Case("first page", list_path(), TABLE_MARKER, {})]
        for wanted in (2, 50, 200):
            path, page = follow(browser, list_path(), wanted)
            cases.append(Case(f"page {page}", path, TABLE_MARKER, {}))
        cases.append(
            Case(
                f"row {total // 2:,}",
                list_path(after=middle_cursor),
                TABLE_MARKER,
                {},
            )
        )
        for state in ("accepted", "invited", "expired", "link-opened"):
            cases.append(Case(f"state={state}", list_path(state=state), TABLE_MARKER, {}))
        path, page = follow(browser, list_path(state="invited"), 10)
        cases.append(Case(f"state=invited p{page}", path, TABLE_MARKER, {}))
        cases.append(Case("q=dental", list_path(q="dental"), TABLE_MARKER, {}))
        cases.append(
            Case(
                "q=<one company>",
                list_path(q=rare_query),
                str(escape(rare)).encode(),
                {},
            )
        )
        for case in cases:
            case.params = params_of(case.path)
            status, _, body = browser.go("GET", case.path)
            if status != 200 or case.marker not in body:
                raise RuntimeError(f"{case.name} ({case.path}): {status}:\n{body[:800]!r}")
            case.body_bytes = len(body)
            case.rows = body.count(b"<tr>") - 1 if TABLE_MARKER in body else 0
    finally:
        browser.close()
    print(f"one company's name searched: {rare_query!r}", flush=True)
    return cases


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Run:
    target: str
    requests: int
    seconds: float
    latencies: list[float]
    errors: list[str]
    server_cpu: float
    database_cpu: float
    other_cpu: float

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else float("nan")

    def ms(self, p: float) -> float:
        return percentile(sorted(self.latencies), p) * 1e3


def drive(
    server: Server,
    servers: list[Server],
    path: str,
    marker: bytes,
    cookie: str | None,
    requests: int,
    clients: int,
    budget: float,
) -> Run:
    """``requests`` GETs of ``path`` from ``clients`` keep-alive connections (threads), after
    up to ``WARMUP_REQUESTS`` unmeasured ones on each; every response checked. No request is
    started after ``budget`` seconds (a page of several seconds would take an hour otherwise):
    then fewer were measured, and the report says so."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    browsers = [Browser(server.port, cookie) for _ in range(clients)]
    warm_until = time.monotonic() + WARMUP_SECONDS
    for browser in browsers:
        for _ in range(WARMUP_REQUESTS):
            browser.go("GET", path)
            if time.monotonic() > warm_until:
                break
    shares = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    start = threading.Barrier(clients + 1)

    def work(browser: Browser, count: int) -> None:
        mine: list[float] = []
        wrong: list[str] = []
        start.wait()
        for n in range(count):
            if n and time.perf_counter() > deadline:
                break
            began = time.perf_counter()
            try:
                status, _, body = browser.go("GET", path)
            except (OSError, http.client.HTTPException) as exc:
                wrong.append(f"{type(exc).__name__}: {exc}")
                continue
            took = time.perf_counter() - began
            if status != 200 or marker not in body:
                wrong.append(f"{status} {body[:200]!r}")
            else:
                mine.append(took)
        with lock:
            latencies.extend(mine)
            errors.extend(wrong)

    threads = [
        threading.Thread(target=work, args=(b, n), daemon=True)
        for b, n in zip(browsers, shares, strict=True)
    ]
    for thread in threads:
        thread.start()
    busy_from, cpu_from = machine_busy_seconds(), server_cpu_seconds(servers, True)
    own_from = time.process_time()
    began = time.perf_counter()
    deadline = began + budget
    start.wait()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    busy_to, cpu_to = machine_busy_seconds(), server_cpu_seconds(servers, True)
    own = time.process_time() - own_from
    for browser in browsers:
        browser.close()
    ours = sum(cpu_to.values()) - sum(cpu_from.values()) + own
    return Run(
        server.name,
        requests,
        seconds,
        latencies,
        errors,
        server_cpu=cpu_to[server.name] - cpu_from[server.name],
        database_cpu=cpu_to["database"] - cpu_from["database"],
        other_cpu=max(0.0, busy_to - busy_from - ours),
    )


# --- EXPLAIN -----------------------------------------------------------------------------------


def explain(url: str, partner_id: str, cases: list[Case]) -> dict[str, float]:
    """Print EXPLAIN (ANALYZE, BUFFERS) of the statements customer_page sends for each case;
    the execution time of each case's list query, in ms."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from portal.domain import reports

    engine = engine_for(url)
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    timings: dict[str, float] = {}
    try:
        event.listen(engine, "before_cursor_execute", capture)
        for case in cases:
            captured.clear()
            with Session(engine) as session:
                reports.customer_page(  # warms the cache too
                    session,
                    partner_id,
                    query=case.params["query"],
                    state=case.params["state"],
                    cursor=case.params["cursor"],
                )
                session.rollback()
            event.remove(engine, "before_cursor_execute", capture)
            try:
                # The list query; the others (the partner's resellers, their names) are by key.
                for statement, parameters in captured:
                    if "FROM customers" not in statement:
                        continue
                    with engine.connect() as connection:
                        plan = [
                            row[0]
                            for row in connection.exec_driver_sql(
                                "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                            )
                        ]
                    print(f"\n--- {case.name}: list query ---")
                    print(_compact(statement, parameters))
                    print("\n".join(plan))
                    executed = [line for line in plan if line.startswith("Execution Time")]
                    if executed:
                        timings[case.name] = float(executed[0].split()[2])
            finally:
                event.listen(engine, "before_cursor_execute", capture)
    finally:
        engine.dispose()
    return timings


def _compact(statement: str, parameters: Any) -> str:
    """The statement, its column list shortened, with its parameters."""
    text = re.sub(
        r"SELECT customers\.id, .*?\s+FROM",
        "SELECT customers.*, customer_relationships.* FROM",
        statement,
        count=1,
        flags=re.S,
    )
    shown = {
        k: (v if len(str(v)) < 60 else str(v)[:57] + "...") for k, v in dict(parameters).items()
    }
    return f"{text}\n-- parameters: {shown}"


# --- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the dashboard's customer list (GET /dashboard/customers) with "
        "1,000,000 customers in PostgreSQL, against a bare Flask app under the same gunicorn."
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="PostgreSQL database to make the benchmark's schema in (default "
        f"{DEFAULT_DATABASE_URL})",
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=1_000_000,
        help="customers the signed-in partner created (its list also holds those shared with it)",
    )
    parser.add_argument(
        "--other-customers", type=int, default=100_000, help="customers a second partner created"
    )
    parser.add_argument(
        "--resellers",
        type=int,
        default=0,
        help="make the partner an indirect provider whose customers are created by it and this "
        "many resellers of its own (default 0: a direct partner)",
    )
    parser.add_argument(
        "--shared",
        type=float,
        default=30.0,
        help="percent of all customers with one or two partners besides their creator, through "
        "accepted relationship requests (default 30)",
    )
    parser.add_argument("--requests", type=int, default=200, help="measured requests per case")
    parser.add_argument(
        "--clients", type=int, default=1, help="concurrent keep-alive connections per case"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=30.0,
        help="no new request of a case after this many seconds (slow cases measure fewer)",
    )
    parser.add_argument(
        "--schema",
        help="name of the schema (default: a new dashboard_bench_<random>); an existing seeded "
        "one is reused as it is, and kept",
    )
    parser.add_argument("--keep", action="store_true", help="keep the schema at the end")
    parser.add_argument("--no-explain", action="store_true", help="skip EXPLAIN ANALYZE")
    parser.add_argument(
        "--cases",
        default="",
        help="only the cases whose names contain one of these (comma-separated)",
    )
    args = parser.parse_args()
    if not args.database_url.startswith(("postgresql", "postgres://")):
        parser.error("--database-url must be a PostgreSQL URL")
    if not (1000 <= args.customers <= 50_000_000 and 0 <= args.other_customers <= 50_000_000):
        parser.error("need 1000 <= --customers <= 50,000,000 and --other-customers >= 0")
    if not 0 <= args.resellers <= 100:
        parser.error("need 0 <= --resellers <= 100")
    if not 0 <= args.shared <= 100:
        parser.error("need 0 <= --shared <= 100")
    if not (1 <= args.requests <= 100_000 and 1 <= args.clients <= 64):
        parser.error("need 1 <= --requests <= 100000 and 1 <= --clients <= 64")
    if args.schema and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", args.schema):
        parser.error("--schema: lower-case letters, digits and _ only")
    return args


def main() -> int:
    return run_guarded(run, parse_args())


def run(args: argparse.Namespace, cleanup: Cleanup) -> int:
    from baseline_server import serve_settings  # bench/ is on sys.path

    tempdir = Path(tempfile.mkdtemp(prefix="portal-dashboard-bench-"))
    cleanup.tempdir = tempdir
    schema = args.schema or f"dashboard_bench_{uuid.uuid4().hex[:10]}"
    url = with_schema(args.database_url, schema)
    seeding: Seeding | None = None
    if schema_exists(args.database_url, schema):
        seeding = seeded_partner(url)
        if seeding is None:
            raise RuntimeError(f"schema {schema} exists but holds no seeded benchmark database")
        print(f"reusing schema {schema}: {seeding.customers:,} customers on the partner's list")
    else:
        create_schema(args.database_url, schema)
        if not args.keep:
            cleanup.pg_admin_url, cleanup.pg_schema = args.database_url, schema
        print(f"seeding schema {schema} of {args.database_url}", flush=True)
        seeding = seed(url, args.customers, args.other_customers, args.resellers, args.shared / 100)
        print(
            f"seeded in {seeding.seconds:.1f} s: "
            + ", ".join(f"{n:,} {t}" for t, n in seeding.counts.items()),
            flush=True,
        )

    env = bench_environment(tempdir / "instance", url)
    served = portal_version(env, tempdir)
    portal = start_server("portal", [str(VENV_BIN / "portal"), "serve"], env, tempdir, cleanup)
    wait_until_answers(portal, "/dashboard/signin", {})
    cookie = sign_in(portal.port)
    started = time.monotonic()
    cases = build_cases(portal.port, cookie, url, seeding.partner_id, seeding.customers)
    print(f"cases ready (following the page links) in {time.monotonic() - started:.1f} s")
    if args.cases:
        wanted = [w.strip() for w in args.cases.split(",") if w.strip()]
        cases = [c for c in cases if any(w in c.name for w in wanted)]
    baseline = start_server(
        "baseline",
        [sys.executable, str(BENCH / "baseline_server.py"), "--agreement-bytes",
         str(cases[0].body_bytes if cases else 20000)],
        env,
        tempdir,
        cleanup,
    )  # fmt: skip
    baseline_marker = b'name="accept"'
    wait_until_answers(baseline, "/agreement", {})
    servers = [portal, baseline]

    workers, threads = serve_settings()
    print(
        f"gunicorn: gthread, {workers} workers x {threads} threads (portal serve defaults)\n"
        f"load: {len(cases)} cases x {args.requests} requests from {args.clients} keep-alive "
        f"connection(s), each next to {args.requests} baseline requests",
        flush=True,
    )
    results: list[tuple[Case, Run, Run]] = []
    for n, case in enumerate(cases):
        runs: dict[str, Run] = {}
        order = [baseline, portal] if n % 2 == 0 else [portal, baseline]  # ABBA
        for server in order:
            if server is portal:
                runs["portal"] = drive(
                    portal, servers, case.path, case.marker, cookie, args.requests, args.clients,
                    args.max_seconds,
                )  # fmt: skip
            else:
                runs["baseline"] = drive(
                    baseline, servers, "/agreement", baseline_marker, None, args.requests,
                    args.clients, args.max_seconds,
                )  # fmt: skip
        mine, base = runs["portal"], runs["baseline"]
        results.append((case, mine, base))
        print(
            f"  {n + 1:2}/{len(cases)} {case.name:<18} {len(mine.latencies):4} req "
            f"{mine.rps:7.1f} req/s  p50 "
            f"{mine.ms(50):7.2f}  p95 {mine.ms(95):7.2f}  p99 {mine.ms(99):7.2f} ms   baseline "
            f"p95 {base.ms(95):5.2f} ms   errors {len(mine.errors) + len(base.errors)}",
            flush=True,
        )

    status = report(args, results, seeding, schema, served, workers, threads)
    if not args.no_explain and cases:
        timings = explain(url, seeding.partner_id, cases)
        print("\nEXPLAIN ANALYZE execution time of the list query (one run, warm cache):")
        for case in cases:
            print(f"  {case.name:<20}{timings.get(case.name, float('nan')):9.2f} ms")
    if args.keep or seeding.reused:
        print(f"\nschema {schema} kept: --schema {schema} reuses it")
    return status


def report(
    args: argparse.Namespace,
    results: list[tuple[Case, Run, Run]],
    seeding: Seeding,
    schema: str,
    served: str,
    workers: int,
    threads: int,
) -> int:
    print()
    print(f"machine:  {machine()}")
    print(f"portal:   {served}")
    print(
        f"database: PostgreSQL, schema {schema}: {seeding.customers:,} customers on the "
        "partner's list"
    )
    if seeding.reused:
        print("seeding:  reused (not measured in this run)")
    else:
        print(
            f"seeding:  {seeding.seconds:.1f} s ("
            + ", ".join(f"{name} {secs:.1f} s" for name, secs in seeding.steps)
            + ")"
        )
    print(f"server:   gunicorn gthread, {workers} workers x {threads} threads")
    print(
        f"load:     {args.requests} requests per case from {args.clients} keep-alive "
        "connection(s); the baseline (constant page of the first page's size) next to each case"
    )
    print()
    print(
        f"{'case':20}{'rows':>5}{'reqs':>5}{'req/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
        f"{'max ms':>8}{'CPU ms/req':>11}{'PG ms/req':>10}  {'base p50':>8}{'base p95':>9}"
        f"{'base req/s':>11}"
        f"{'p95 x':>7}{'req/s x':>8}  p95 < {TARGET_P95_MS:.0f} ms"
    )
    errors: list[str] = []
    missed = []
    for case, mine, base in results:
        met = mine.ms(95) < TARGET_P95_MS
        if not met:
            missed.append(case.name)
        done = max(1, len(mine.latencies))
        print(
            f"{case.name:20}{case.rows:5d}{len(mine.latencies):5d}{mine.rps:8.1f}"
            f"{mine.ms(50):8.2f}{mine.ms(95):8.2f}{mine.ms(99):8.2f}{mine.ms(100):8.2f}"
            f"{mine.server_cpu / done * 1e3:11.2f}"
            f"{mine.database_cpu / done * 1e3:10.2f}  {base.ms(50):8.2f}{base.ms(95):9.2f}"
            f"{base.rps:11.0f}{mine.ms(95) / base.ms(95):7.1f}{mine.rps / base.rps:8.3f}  "
            f"{'MET' if met else 'MISSED'}"
        )
        errors += [f"{case.name} portal: {e}" for e in mine.errors]
        errors += [f"{case.name} baseline: {e}" for e in base.errors]
    every = [x for _, mine, _ in results for x in mine.latencies]
    base_every = [x for _, _, base in results for x in base.latencies]
    if every:
        ordered, base_ordered = sorted(every), sorted(base_every)
        print(
            f"{'all cases':20}{'':5}{len(every):5d}{'':8}{percentile(ordered, 50) * 1e3:8.2f}"
            f"{percentile(ordered, 95) * 1e3:8.2f}{percentile(ordered, 99) * 1e3:8.2f}"
            f"{ordered[-1] * 1e3:8.2f}{'':21}  {percentile(base_ordered, 50) * 1e3:8.2f}"
            f"{percentile(base_ordered, 95) * 1e3:9.2f}"
        )
    print(
        "\n(p95 x: portal p95 / baseline p95; req/s x: portal / baseline requests per second; "
        "CPU ms/req: the portal's gunicorn; PG ms/req: all PostgreSQL processes on the machine; "
        f"rows: customers on the page; reqs: measured requests, fewer than {args.requests} when "
        f"a case reached --max-seconds {args.max_seconds:g})"
    )
    print()
    if missed:
        print(
            f"target p95 < {TARGET_P95_MS:.0f} ms: MISSED for {len(missed)} of {len(results)} "
            f"case(s): {', '.join(missed)}"
        )
    else:
        print(f"target p95 < {TARGET_P95_MS:.0f} ms: MET for all {len(results)} cases")
    runs = [r for _, mine, base in results for r in (mine, base)]
    seconds = sum(r.seconds for r in runs)
    other = sum(r.other_cpu for r in runs) / seconds if seconds else 0.0
    if other > OTHER_LOAD_WARNING:
        print(
            f"\nWARNING: other work used {other:.2f} cores on average while measuring (other "
            "processes, CPU steal): latencies are inflated and noisy; the CPU per request is the "
            "least affected figure."
        )
    if errors:
        print(f"\nERRORS: {len(errors)} wrong or failed responses; the figures are not valid.")
        for sample in errors[:10]:
            print(f"  {sample}")
        return 1
    print("\nall responses were 200 with the case's marker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
