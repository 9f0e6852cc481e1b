"""Throughput and latency of the status poll, against a bare Flask app under the same gunicorn.

Run by hand from the project folder (about a minute with the defaults; ``--bulk-customers
1000000`` adds a few minutes of seeding):

    .venv/bin/python bench/status_bench.py [--clients 16] [--seconds 10] [--rounds 2]
                                           [--database-url postgresql://root@127.0.0.1:5432/test
                                            [--bulk-customers 1000000 [--bulk-shared 30]]]

What it does, in one run:

1. makes a temporary instance folder with a SQLite database (or a throwaway schema in the
   PostgreSQL database given by ``--database-url``) and seeds it with the real CLI and API:
   ``portal db upgrade``, ``portal partners create --json``, then customers created (and some
   attested) through ``POST /v1/customers``;
2. starts ``portal serve`` (gunicorn, gthread, its default workers and threads) and
   ``bench/baseline_server.py`` (a Flask app answering a constant ``{"isSigned": true}``, served by
   ``portal.server.run`` with the same settings);
3. with ``--bulk-customers N`` (PostgreSQL only), after that seeding: creates three more direct
   partners with the CLI and inserts N customers on the server (``INSERT ... SELECT ...
   generate_series``, the customers statement of ``dashboard_bench.py``): half created by the
   polled partner, 30 % and 20 % by two of the others, each with its creator's relationship
   (``progress``: 15 % not invited, 20 % invited, 5 % opened, 5 % signed in, 40 % accepted,
   15 % attested; ``progress_at``, ``invitation_expires_at``). ``--bulk-shared`` percent (default
   30) of them also accepted one or two other partners' relationship requests (60 % / 40 %;
   ``origin`` ``request``, active), so they have two or three partners; accepting a request
   accepts the agreement (``relationship_requests.accept``), so every shared customer, and the
   40 % who accepted their creator's invitation, has a direct acceptance (``dedupe_key``
   ``direct``, ``partner_id`` the partner it came through); the attested ones the creator's
   attestation. No invitations or events (the status query reads neither); regions are not
   modelled. The plain indexes are rebuilt after the load from their own definitions, then
   ``VACUUM ANALYZE`` of those tables;
4. drives each in turn with ``--clients`` keep-alive HTTP/1.1 connections, spread over a few
   load-generator processes (epoll and raw sockets: little client CPU taken from the 2 cores),
   each polling ``GET /v1/customers/<id>/directSignedMicrosoftCustomerAgreementStatus`` with the
   partner's bearer key; the two targets alternate (ABBA) so machine noise hits both alike.
   Without ``--bulk-customers`` every connection polls one attested customer (``isSigned``
   false). With it, connection ``i`` polls its own customer (a connection keeps its request):
   in turn one the polled partner created and one another partner created and shares with it
   (its relationship through a request); both kinds have accepted directly, as every shared
   one has, because the load generator checks one exact body per run. Customers it cannot see
   (404 ``CustomerNotFound``, the same body as for an unknown id) and its own not accepted ones
   (``isSigned`` false) are checked once before measuring, not polled;
5. checks every response (status 200, exact body), records every latency, and prints
   requests/s, the portal/baseline ratio and p50/p95/p99 next to the targets.

Exit status: 0 when all responses were right (targets met or not), 1 on any wrong response or
failure. Only 127.0.0.1 is used; every subprocess and temporary file (and the schema) is removed at
the end, also on Ctrl-C. ``PORTAL_SERVE_WORKERS`` / ``PORTAL_SERVE_THREADS`` in the environment
reach both servers (to try other settings); every other ``PORTAL_*`` variable is ignored.

Not a test: pytest collects only ``tests/``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from _common import (  # bench/ is on sys.path
    BENCH,
    HOST,
    OTHER_LOAD_WARNING,
    REQUEST_TIMEOUT,
    VENV_BIN,
    Cleanup,
    Phase,
    machine,
    measure,
    percentile,
    request_once,
    run_cli,
    run_guarded,
    seed_instance,
    start_server,
    wait_until_answers,
)
from dashboard_bench import (  # the customers statement and the index rebuild of its seeding
    CUSTOMERS_SQL,
    PLAIN_INDEXES_SQL,
    drop_plain_indexes,
    engine_for,
)

STATUS_PATH = "/v1/customers/{}/directSignedMicrosoftCustomerAgreementStatus"
MCA = "MicrosoftCustomerAgreement"

TARGET_RATIO = 0.70
TARGET_P99_MS = 15.0
TARGET_CLIENTS = 16


# --- seeding -----------------------------------------------------------------------------------


def customer_body(n: int) -> dict[str, Any]:
    return {
        "companyProfile": {"domain": f"bench{n:05d}-{uuid.uuid4().hex[:8]}.example.test"},
        "billingProfile": {
            "email": f"billing{n}@bench.example.test",
            "culture": "en-US",
            "language": "en",
            "companyName": f"Bench Customer {n}",
            "defaultAddress": {
                "country": "US",
                "firstName": "Tania",
                "lastName": "Carr",
                "addressLine1": "1 Main Street",
                "city": "Redmond",
                "state": "WA",
                "postalCode": "98052",
                "phoneNumber": "1234567890",
            },
        },
    }


def mca_template_id(port: int, key: str) -> str:
    """The current Microsoft Customer Agreement template, as ``GET /v1/agreements`` gives it."""
    auth = {"Authorization": f"Bearer {key}"}
    status, raw = request_once(port, "GET", f"/v1/agreements?agreementType={MCA}", auth)
    if status != 200:
        raise RuntimeError(f"GET /v1/agreements: {status} {raw[:300]!r}")
    return str(json.loads(raw)["items"][0]["templateId"])


def seed_customers(port: int, key: str, count: int) -> str:
    """Create ``count`` customers through the API, attest every other one; return one id."""
    auth = {"Authorization": f"Bearer {key}"}
    template_id = mca_template_id(port, key)
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        ids = []
        for n in range(count):
            status, raw = request_once(
                port, "POST", "/v1/customers", auth, customer_body(n), connection=conn
            )
            if status != 201:
                raise RuntimeError(f"POST /v1/customers: {status} {raw[:300]!r}")
            customer_id = str(json.loads(raw)["id"])
            ids.append(customer_id)
            if n % 2 == 0:
                attestation = {
                    "primaryContact": {
                        "firstName": "Tania",
                        "lastName": "Carr",
                        "email": f"contact{n}@bench.example.test",
                    },
                    "templateId": template_id,
                    "type": MCA,
                    "dateAgreed": "2024-06-14T00:00:00Z",
                }
                status, raw = request_once(
                    port,
                    "POST",
                    f"/v1/customers/{customer_id}/agreements",
                    auth,
                    attestation,
                    connection=conn,
                )
                if status != 201:
                    raise RuntimeError(f"POST .../agreements: {status} {raw[:300]!r}")
    finally:
        conn.close()
    # One from the middle, with an attestation (so the EXISTS has a row to look at).
    return ids[(count // 2) & ~1]


# --- bulk seeding (PostgreSQL, --bulk-customers) -----------------------------------------------

#: Direct partners made besides the polled one: two create customers too, all serve shared ones.
OTHER_PARTNERS = 3
#: Shares of the bulk customers by creator: the polled partner, then the first two others.
CREATOR_SHARES = (0.5, 0.3, 0.2)

#: Each bulk customer's story, a temporary table for the statements after it. ``story``: how far
#: its creator's dealings went (before sharing), ``first_at`` its creator's invitation,
#: ``story_at`` when it got that far. A shared one (``:share`` of them) accepted one or two
#: relationship requests of partners other than its creator (``extra1`` at ``began1``, 40 % of
#: them also ``extra2`` at ``began2``). Accepting a request accepts the agreement: ``accepted_at``
#: is the customer's own acceptance (the creator's invitation, or the first request if earlier),
#: ``accepted_through`` the partner it came through. Only customers without a relationship yet
#: (the bulk ones; those made through the API have theirs). Bind parameters: now, share,
#: partners (all four), creators.
BULK_STORY_SQL = f"""
CREATE TEMPORARY TABLE bench_status_story ON COMMIT DROP AS
SELECT v.*,
    CASE WHEN v.story = 'accepted' AND (v.began1 IS NULL OR v.story_at <= v.began1)
         THEN v.story_at ELSE v.began1 END AS accepted_at,
    CASE WHEN v.story = 'accepted' AND (v.began1 IS NULL OR v.story_at <= v.began1)
         THEN v.creator ELSE v.extra1 END AS accepted_through
FROM (
    SELECT u.*,
        CASE WHEN u.story = 'not-invited' THEN u.created_at
             WHEN u.story = 'invited' THEN u.first_at
             ELSE coalesce(u.first_at, u.created_at)
                  + (CAST(:now AS timestamp) - coalesce(u.first_at, u.created_at)) * u.r3
        END AS story_at,
        u.first_at + interval '30 days' AS expires_at,
        CASE WHEN u.extra2 IS NOT NULL
             THEN u.began1 + (CAST(:now AS timestamp) - u.began1) * u.rb2 END AS began2
    FROM (
        SELECT t.*,
            CASE WHEN t.r1 < 0.15 THEN 'not-invited' WHEN t.r1 < 0.35 THEN 'invited'
                 WHEN t.r1 < 0.40 THEN 'link-opened' WHEN t.r1 < 0.45 THEN 'signed-in'
                 WHEN t.r1 < 0.85 THEN 'accepted' ELSE 'attested' END AS story,
            CASE WHEN t.r1 >= 0.15 AND (t.r1 < 0.85 OR t.r2 < 0.3)
                 THEN t.created_at + (CAST(:now AS timestamp) - t.created_at) * 0.05 * t.rf END
                AS first_at,
            CASE WHEN t.shared THEN t.cand[t.i1] END AS extra1,
            CASE WHEN t.shared AND t.rk < 0.4
                 THEN t.cand[t.i2 + CASE WHEN t.i2 >= t.i1 THEN 1 ELSE 0 END] END AS extra2,
            CASE WHEN t.shared
                 THEN t.created_at + (CAST(:now AS timestamp) - t.created_at) * t.rb1 END
                AS began1
        FROM (
            SELECT c.id, c.partner_id AS creator, c.created_at, c.domain, c.country, c.culture,
                c.contact_email, c.contact_first_name, c.contact_last_name,
                array_remove(CAST(:partners AS varchar[]), c.partner_id) AS cand,
                random() < :share AS shared,
                1 + floor(random() * {OTHER_PARTNERS})::int AS i1,
                1 + floor(random() * {OTHER_PARTNERS - 1})::int AS i2,
                random() AS r1, random() AS r2, random() AS r3, random() AS rf, random() AS rk,
                random() AS rb1, random() AS rb2
            FROM customers AS c
            WHERE c.partner_id = ANY(CAST(:creators AS varchar[]))
              AND NOT EXISTS (
                  SELECT 1 FROM customer_relationships AS r WHERE r.customer_id = c.id)
        ) AS t
    ) AS u
) AS v
"""  # noqa: S608 - constants of this file only; the values are bind parameters

#: The creator's relationship (``relationships.new``: began when the customer was created, the
#: creator's progress, accepted once the customer accepted through anyone, and when its
#: invitation link expires), then those the shared customers began by accepting a request
#: (``relationships.begin``: accepted from the start), all active.
BULK_RELATIONSHIPS_SQL = [
    """
INSERT INTO customer_relationships
    (customer_id, partner_id, kind, provider_id, state, origin, began_at, accepted_by,
     removed_at, removed_by, progress, progress_at, invitation_expires_at)
SELECT id, creator, 'reseller', NULL, 'active', 'created', created_at, '', NULL, '',
       CASE WHEN accepted_at IS NOT NULL THEN 'accepted' ELSE story END,
       coalesce(accepted_at, story_at), expires_at
FROM bench_status_story
""",
    """
INSERT INTO customer_relationships
    (customer_id, partner_id, kind, provider_id, state, origin, began_at, accepted_by,
     removed_at, removed_by, progress, progress_at, invitation_expires_at)
SELECT s.id, e.partner_id, 'reseller', NULL, 'active', 'request', e.began_at,
       'admin@' || s.domain, NULL, '', 'accepted', e.began_at, NULL
FROM bench_status_story AS s
CROSS JOIN LATERAL (VALUES (s.extra1, s.began1), (s.extra2, s.began2))
    AS e (partner_id, began_at)
WHERE e.partner_id IS NOT NULL
""",
]

#: The customer's own acceptance (evidence and ``partner_id`` of the partner it came through)
#: and the creator's attestation. Bind parameters: template.
BULK_ACCEPTANCES_SQL = """
INSERT INTO agreement_acceptances (
    id, customer_id, agreement_type, template_id, version_rank, method, dedupe_key, first_name,
    last_name, email, phone, date_agreed, recorded_at, recorded_by, country, language,
    document_uri, ip_address, user_agent, partner_id)
SELECT gen_random_uuid()::text, s.id, 'MicrosoftCustomerAgreement', CAST(:template AS text), 0,
       a.method, CASE WHEN a.method = 'direct' THEN 'direct' ELSE md5(s.contact_email) END,
       s.contact_first_name, s.contact_last_name, s.contact_email, '', a.at, a.at,
       CASE WHEN a.method = 'direct' THEN 'cust-' || left(s.id, 8) ELSE s.creator END,
       s.country, s.culture, 'https://go.microsoft.com/fwlink/?LinkId=2143225',
       CASE WHEN a.method = 'direct' THEN '203.0.113.' || (1 + abs(hashtext(s.id)) % 250)
            ELSE '' END,
       CASE WHEN a.method = 'direct' THEN 'Mozilla/5.0 (bench)' ELSE '' END,
       a.partner_id
FROM bench_status_story AS s
CROSS JOIN LATERAL (VALUES
    ('direct', s.accepted_at, s.accepted_through),
    ('attested', CASE WHEN s.story = 'attested' THEN s.story_at END, s.creator)
) AS a (method, at, partner_id)
WHERE a.at IS NOT NULL
"""

BULK_TABLES = ["customers", "customer_relationships", "agreement_acceptances"]

#: Whether a customer has accepted directly, as the status query asks it.
_SIGNED = (
    "EXISTS (SELECT 1 FROM agreement_acceptances AS a WHERE a.customer_id = r.customer_id "
    "AND a.agreement_type = 'MicrosoftCustomerAgreement' AND a.dedupe_key = 'direct')"
)
#: Customers of the polled partner, in the order of their (random) ids. Bind parameters: p, n.
PICK_SQL = {
    "own": f"""SELECT r.customer_id FROM customer_relationships AS r
        WHERE r.partner_id = :p AND r.state = 'active' AND r.origin = 'created' AND {_SIGNED}
        ORDER BY r.customer_id LIMIT :n""",  # noqa: S608 - constants of this file
    "shared": f"""SELECT r.customer_id FROM customer_relationships AS r
        JOIN customers AS c ON c.id = r.customer_id
        WHERE r.partner_id = :p AND r.state = 'active' AND r.origin = 'request'
          AND c.partner_id <> :p AND {_SIGNED}
        ORDER BY r.customer_id LIMIT :n""",  # noqa: S608 - constants of this file
    "unsigned": f"""SELECT r.customer_id FROM customer_relationships AS r
        WHERE r.partner_id = :p AND r.state = 'active' AND r.origin = 'created'
          AND NOT {_SIGNED}
        ORDER BY r.customer_id LIMIT :n""",  # noqa: S608 - constants of this file
    "invisible": """SELECT c.id FROM customers AS c
        WHERE c.partner_id <> :p AND NOT EXISTS (
            SELECT 1 FROM customer_relationships AS r
            WHERE r.customer_id = c.id AND r.partner_id = :p AND r.state = 'active')
        ORDER BY c.id LIMIT :n""",
}

COUNTS_SQL = {
    "customers": "SELECT count(*) FROM customers",
    "relationships": "SELECT count(*) FROM customer_relationships",
    "direct acceptances": "SELECT count(*) FROM agreement_acceptances WHERE dedupe_key = 'direct'",
    "customers with 2 partners": """SELECT count(*) FROM (SELECT customer_id
        FROM customer_relationships WHERE state = 'active'
        GROUP BY customer_id HAVING count(*) = 2) AS x""",
    "with 3": """SELECT count(*) FROM (SELECT customer_id
        FROM customer_relationships WHERE state = 'active'
        GROUP BY customer_id HAVING count(*) = 3) AS x""",
    "the polled partner sees": """SELECT count(*) FROM customer_relationships
        WHERE partner_id = :p AND state = 'active'""",
    "of them shared with it by others": """SELECT count(*) FROM customer_relationships
        WHERE partner_id = :p AND state = 'active' AND origin = 'request'""",
}


@dataclass
class Bulk:
    """What the bulk seeding made, and the polled partner's customers picked from it."""

    counts: dict[str, int]
    seconds: float
    picked: dict[str, list[str]] = field(default_factory=dict)


def seed_bulk(
    env: dict[str, str], key: str, template_id: str, count: int, share: float, picks: int
) -> Bulk:
    """Three more partners (CLI), then ``count`` customers with their relationships and
    acceptances on the server (see ``BULK_STORY_SQL``); ``picks`` customers of each kind."""
    from sqlalchemy import text

    from portal.core import credentials

    started = mark = time.monotonic()

    def step(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        print(f"  {name}: {now - mark:.1f} s", flush=True)
        mark = now

    others = [
        json.loads(
            run_cli(env, "partners", "create", "--name", f"Bench other {n}", "--kind", "direct",
                    "--json")
        )["id"]
        for n in range(1, OTHER_PARTNERS + 1)
    ]  # fmt: skip
    step(f"{OTHER_PARTNERS} more partners (portal partners create)")
    engine = engine_for(env["PORTAL_DATABASE_URL"])
    try:
        with engine.begin() as connection:
            polled = connection.execute(
                text("SELECT partner_id FROM api_keys WHERE key_hash = :h"),
                {"h": credentials.api_key_hash(key)},
            ).scalar_one()
            partners = [polled, *others]
            connection.execute(text("SET LOCAL synchronous_commit = off"))
            connection.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
            connection.execute(text("SET LOCAL lock_timeout = '60s'"))
            connection.execute(text("SELECT setseed(0.2026)"))
            rebuild = drop_plain_indexes(connection, BULK_TABLES)
            now = datetime.now(UTC).replace(tzinfo=None)
            made = 0
            for number, (creator, part) in enumerate(zip(partners, CREATOR_SHARES, strict=False)):
                n = count - made if number == len(CREATOR_SHARES) - 1 else round(count * part)
                made += n
                connection.execute(
                    text(CUSTOMERS_SQL),
                    {"partner": creator, "n": n, "now": now, "prefix": f"s{number}x"},
                )
            step(f"{count:,} customers")
            connection.execute(
                text(BULK_STORY_SQL),
                {
                    "now": now,
                    "share": share,
                    "partners": partners,
                    "creators": partners[: len(CREATOR_SHARES)],
                },
            )
            step("stories (a temporary table)")
            for statement in BULK_RELATIONSHIPS_SQL:
                connection.execute(text(statement))
            step(f"relationships ({share:.0%} of the customers shared)")
            connection.execute(text(BULK_ACCEPTANCES_SQL), {"template": template_id})
            step("acceptances")
            for definition in rebuild:
                connection.execute(text(definition))
            rebuilt = connection.execute(text(PLAIN_INDEXES_SQL), {"tables": BULK_TABLES}).all()
            if sorted(d for _n, d in rebuilt) != sorted(rebuild):
                raise RuntimeError(f"indexes differ after the rebuild: {rebuilt} != {rebuild}")
            step(f"{len(rebuild)} indexes rebuilt")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in [*BULK_TABLES, "partners", "api_keys"]:
                connection.execute(text(f"VACUUM ANALYZE {table}"))
        step("VACUUM ANALYZE")
        seconds = time.monotonic() - started
        with engine.connect() as connection:
            counts = {
                name: int(connection.execute(text(sql), {"p": polled}).scalar_one())
                for name, sql in COUNTS_SQL.items()
            }
            picked = {
                kind: [
                    str(row[0]) for row in connection.execute(text(sql), {"p": polled, "n": picks})
                ]
                for kind, sql in PICK_SQL.items()
            }
    finally:
        engine.dispose()
    return Bulk(counts, seconds, picked)


def check_unseen(
    port: int, auth: dict[str, str], invisible: list[str], unsigned: list[str]
) -> None:
    """Once, not measured: customers the polled partner cannot see answer 404
    ``CustomerNotFound``, the same body as an unknown id's; its own customers that have not
    accepted answer ``isSigned`` false."""
    from portal.core.errors import CustomerNotFound

    unknown = str(uuid.uuid4())
    status, unknown_body = request_once(port, "GET", STATUS_PATH.format(unknown), auth)
    for customer_id in invisible:
        status, body = request_once(port, "GET", STATUS_PATH.format(customer_id), auth)
        want = CustomerNotFound(customerId=customer_id).to_json()
        if (
            status != 404
            or json.loads(body) != want
            or body != unknown_body.replace(unknown.encode(), customer_id.encode())
        ):
            raise RuntimeError(f"unseen {customer_id}: {status} {body[:300]!r}, want 404 {want}")
    for customer_id in unsigned:
        status, body = request_once(port, "GET", STATUS_PATH.format(customer_id), auth)
        if status != 200 or json.loads(body) != {"isSigned": False}:
            raise RuntimeError(f"unsigned {customer_id}: {status} {body[:300]!r}")


def build_request(path: str, key: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {HOST}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Accept: application/json\r\n"
        "\r\n"
    ).encode()


# --- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark GET .../directSignedMicrosoftCustomerAgreementStatus against a "
        "bare Flask app under the same gunicorn settings."
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds per phase")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds; each measures baseline and portal (ABBA)"
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL URL (e.g. postgresql://root@127.0.0.1:5432/test); a throwaway schema "
        "is made and dropped. Default: SQLite in a temporary instance folder.",
    )
    parser.add_argument("--customers", type=int, default=200, help="customers to seed")
    parser.add_argument(
        "--bulk-customers",
        type=int,
        default=0,
        metavar="N",
        help="with --database-url: N more customers inserted on the server after the API's, "
        "with one to three partners each; the polled customers are then a mix (see the docstring)",
    )
    parser.add_argument(
        "--bulk-shared",
        type=float,
        default=30.0,
        metavar="PERCENT",
        help="percent of the bulk customers with one or two partners besides their creator",
    )
    parser.add_argument(
        "--client-procs", type=int, default=2, help="load-generator processes (clients spread)"
    )
    args = parser.parse_args()
    if not (1 <= args.clients <= 1024 and 1 <= args.rounds <= 20 and args.customers >= 2):
        parser.error("need 1 <= --clients <= 1024, 1 <= --rounds <= 20, --customers >= 2")
    if not (0 < args.seconds <= 600 and 0 <= args.warmup <= 60 and args.client_procs >= 1):
        parser.error("need 0 < --seconds <= 600, 0 <= --warmup <= 60, --client-procs >= 1")
    if args.database_url and not args.database_url.startswith(("postgresql", "postgres://")):
        parser.error("--database-url must be a PostgreSQL URL")
    if args.bulk_customers and not args.database_url:
        parser.error("--bulk-customers needs --database-url (PostgreSQL)")
    if not (0 <= args.bulk_customers <= 20_000_000 and 0 <= args.bulk_shared <= 100):
        parser.error("need 0 <= --bulk-customers <= 20000000, 0 <= --bulk-shared <= 100")
    return args


def main() -> int:
    return run_guarded(run, parse_args())


def run(args: argparse.Namespace, cleanup: Cleanup) -> int:
    from baseline_server import serve_settings  # bench/ is on sys.path

    seeded = seed_instance(args.database_url, cleanup)
    tempdir, env, key = seeded.tempdir, seeded.env, seeded.api_key
    served, db_label = seeded.served, seeded.db_label
    auth = {"Authorization": f"Bearer {key}"}

    portal = start_server("portal", [str(VENV_BIN / "portal"), "serve"], env, tempdir, cleanup)
    baseline = start_server(
        "baseline",
        [sys.executable, str(BENCH / "baseline_server.py")],
        env,
        tempdir,
        cleanup,
    )
    wait_until_answers(portal, "/v1/agreements", auth)
    seeded_at = time.monotonic()
    customer_id = seed_customers(portal.port, key, args.customers)
    print(
        f"seeded {args.customers} customers ({args.customers // 2 + args.customers % 2} "
        f"attested) in {time.monotonic() - seeded_at:.1f} s",
        flush=True,
    )
    if args.bulk_customers:
        print(f"bulk seeding {args.bulk_customers:,} customers:", flush=True)
        bulk = seed_bulk(
            env,
            key,
            mca_template_id(portal.port, key),
            args.bulk_customers,
            args.bulk_shared / 100,
            picks=max(4, args.clients),
        )
        print(
            f"  done in {bulk.seconds:.0f} s: "
            + ", ".join(f"{name} {value:,}" for name, value in bulk.counts.items()),
            flush=True,
        )
        own, shared = bulk.picked["own"], bulk.picked["shared"]
        if not (own and shared and bulk.picked["unsigned"] and bulk.picked["invisible"]):
            raise RuntimeError(f"too few bulk customers of some kind: {bulk.picked}")
        check_unseen(portal.port, auth, bulk.picked["invisible"][:4], bulk.picked["unsigned"][:4])
        # Connection i polls ids[i]: the partner's own and shared ones in turn.
        ids = [
            (own if i % 2 == 0 else shared)[i // 2 % len(own if i % 2 == 0 else shared)]
            for i in range(args.clients)
        ]
        want_portal = {"isSigned": True}
        n_own = len({c for c in ids if c in own})
        polled = (
            f"{len(set(ids))} customers, one per connection: {n_own} the partner created and "
            f"{len(set(ids)) - n_own} others created and share with it, all accepted directly; "
            f"{min(4, len(bulk.picked['invisible']))} it cannot see (404) and "
            f"{min(4, len(bulk.picked['unsigned']))} of its own not accepted checked once"
        )
    else:
        ids = [customer_id]
        want_portal = {"isSigned": False}
        polled = "1 customer, attested (isSigned false), by every connection"
    print(f"polling {polled}", flush=True)
    paths = [STATUS_PATH.format(c) for c in ids]
    wait_until_answers(baseline, paths[0], auth)

    expected = {}
    for server, want in ((portal, want_portal), (baseline, {"isSigned": True})):
        bodies = set()
        for path in dict.fromkeys(paths):
            status, body = request_once(server.port, "GET", path, auth)
            if status != 200 or json.loads(body) != want:
                raise RuntimeError(
                    f"{server.name} answered {status} {body[:300]!r} to {path}, want {want}"
                )
            bodies.add(body)
        if len(bodies) != 1:
            raise RuntimeError(f"{server.name} answered the same with different bodies: {bodies}")
        expected[server.name] = bodies.pop()
    request = [build_request(path, key) for path in paths]

    workers, threads = serve_settings()
    per_phase = args.warmup + args.seconds
    print(
        f"gunicorn: gthread, {workers} workers x {threads} threads (portal serve defaults), "
        f"keepalive 5 s, access log on\nload: {args.clients} keep-alive clients in "
        f"{min(args.client_procs, args.clients)} processes, {args.rounds} rounds x 2 phases x "
        f"({args.warmup:g} s warm-up + {args.seconds:g} s) = ~{args.rounds * 2 * per_phase:.0f} s",
        flush=True,
    )
    phases: list[Phase] = []
    order = []
    for r in range(args.rounds):
        pair = [baseline, portal] if r % 2 == 0 else [portal, baseline]  # ABBA
        order += pair
    for i, server in enumerate(order, 1):
        phase = measure(
            server,
            [portal, baseline],
            bool(args.database_url),
            request,
            expected[server.name],
            args.clients,
            args.client_procs,
            args.warmup,
            args.seconds,
            cleanup,
        )
        phases.append(phase)
        ordered = sorted(phase.latencies)
        p50, p99 = percentile(ordered, 50) * 1e3, percentile(ordered, 99) * 1e3
        print(
            f"  {i}/{len(order)} {server.name:<8} {phase.rps:6.0f} req/s  p50 {p50:6.2f} ms  "
            f"p99 {p99:6.2f} ms  server {phase.server_cpu_per_request:5.2f} ms CPU/req  "
            f"cores: client {phase.client_cpu / phase.seconds:.2f} "
            + (f"postgres {phase.database_cpu / phase.seconds:.2f} " if args.database_url else "")
            + f"other {phase.other_cpu / phase.seconds:.2f}  errors {phase.errors}",
            flush=True,
        )
    return report(args, phases, workers, threads, db_label, served, polled)


def report(
    args: argparse.Namespace,
    phases: list[Phase],
    workers: int,
    threads: int,
    db_label: str,
    served: str,
    polled: str,
) -> int:
    figures: dict[str, dict[str, float]] = {}
    errors = 0
    samples: list[str] = []
    for name in ("baseline", "portal"):
        mine = [p for p in phases if p.target == name]
        ordered = sorted(x for p in mine for x in p.latencies)
        figures[name] = {
            "rps": sum(p.completed for p in mine) / sum(p.seconds for p in mine),
            "requests": sum(p.completed for p in mine),
            "p50": percentile(ordered, 50) * 1e3,
            "p95": percentile(ordered, 95) * 1e3,
            "p99": percentile(ordered, 99) * 1e3,
            "max": (ordered[-1] if ordered else float("nan")) * 1e3,
            "cpu": sum(p.server_cpu for p in mine) / max(1, sum(p.completed for p in mine)) * 1e3,
            "db": sum(p.database_cpu for p in mine) / max(1, sum(p.completed for p in mine)) * 1e3,
        }
        errors += sum(p.errors for p in mine)
        samples += [f"{name}: {s}" for s in (s for p in mine for s in p.error_samples)]
    ratio = figures["portal"]["rps"] / figures["baseline"]["rps"]
    p99 = figures["portal"]["p99"]
    ratio_ok = ratio >= TARGET_RATIO
    p99_ok = p99 <= TARGET_P99_MS

    print()
    print(f"machine:  {machine()}")
    print(f"portal:   {served}")
    print(f"database: {db_label}")
    print(f"polled:   {polled}")
    print(f"server:   gunicorn gthread, {workers} workers x {threads} threads")
    print(f"load:     {args.clients} clients, {args.rounds} x {args.seconds:g} s per target")
    print()
    print(
        f"{'':10}{'req/s':>8}{'requests':>10}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
        f"{'max ms':>8}  server CPU ms/req"
    )
    for name, f in figures.items():
        db_cpu = f" (+ {f['db']:.3f} in PostgreSQL)" if args.database_url else ""
        print(
            f"{name:10}{f['rps']:8.0f}{f['requests']:10.0f}{f['p50']:8.2f}{f['p95']:8.2f}"
            f"{f['p99']:8.2f}{f['max']:8.2f}  {f['cpu']:.3f}{db_cpu}"
        )
    print()
    note = "" if args.clients == TARGET_CLIENTS else f" (targets are for {TARGET_CLIENTS} clients)"
    print(
        f"ratio portal/baseline: {ratio:.2f}   target >= {TARGET_RATIO:.2f}   "
        f"{'MET' if ratio_ok else 'MISSED'}{note}"
    )
    cpu_ratio = figures["baseline"]["cpu"] / figures["portal"]["cpu"]
    print(f"  (server CPU per request, baseline/portal: {cpu_ratio:.2f}, less sensitive to noise)")
    print(
        f"portal p99:            {p99:.2f} ms   target <= {TARGET_P99_MS:g} ms  "
        f"{'MET' if p99_ok else 'MISSED'}{note}"
    )
    other = sum(p.other_cpu for p in phases) / sum(p.seconds for p in phases)
    if other > OTHER_LOAD_WARNING:
        print(
            f"\nWARNING: other work used {other:.2f} cores on average while measuring (other "
            "processes, CPU steal): the figures are depressed and noisy; run again on a quiet "
            "machine. The server CPU per request is the least affected figure."
        )
    if errors:
        print(f"\nERRORS: {errors} wrong or failed responses; the figures are not valid.")
        for sample in samples[:10]:
            print(f"  {sample}")
        return 1
    print("\nall responses were 200 with the expected body")
    return 0


if __name__ == "__main__":
    sys.exit(main())
