"""The ``portal`` command line."""

from __future__ import annotations

import json

import pytest

from portal.cli import main

STATUS = "/v1/customers/{}/directSignedMicrosoftCustomerAgreementStatus"


def invoke(runner, *args):
    result = runner.invoke(main, list(args), catch_exceptions=False)
    return result


def create(runner, *args):
    result = invoke(runner, "partners", "create", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_db_upgrade_is_idempotent(runner):
    assert invoke(runner, "db", "upgrade").exit_code == 0
    assert invoke(runner, "db", "upgrade").exit_code == 0


def test_partner_created_on_the_command_line_can_use_the_api(runner, client):
    made = create(runner, "--name", "Contoso Partner", "--kind", "direct")
    assert made["apiKey"].startswith("ptl_")
    response = client.get("/v1/customers", headers={"Authorization": f"Bearer {made['apiKey']}"})
    assert response.status_code == 200


def test_partners_create_plain_output_shows_key_once(runner):
    result = invoke(runner, "partners", "create", "--name", "Plain", "--kind", "direct")
    assert result.exit_code == 0
    assert "ptl_" in result.output
    assert "cannot be shown again" in result.output
    listed = invoke(runner, "partners", "keys", "list")
    assert "ptl_" in listed.output  # the prefix only
    key = next(line.split()[1] for line in result.output.splitlines() if "ptl_" in line)
    assert key not in listed.output


def test_reseller_needs_an_indirect_provider(runner):
    direct = create(runner, "--name", "Direct", "--kind", "direct")
    no_provider = invoke(runner, "partners", "create", "--name", "R", "--kind", "indirect-reseller")
    assert no_provider.exit_code != 0
    assert "--provider" in no_provider.output
    wrong = invoke(
        runner,
        "partners",
        "create",
        "--name",
        "R",
        "--kind",
        "indirect-reseller",
        "--provider",
        direct["id"],
    )
    assert wrong.exit_code != 0
    assert "not an indirect provider" in wrong.output
    provider = create(runner, "--name", "Provider", "--kind", "indirect-provider")
    reseller = create(
        runner,
        "--name",
        "R",
        "--kind",
        "indirect-reseller",
        "--provider",
        provider["id"],
        "--country",
        "de",
    )
    listed = json.loads(invoke(runner, "partners", "list", "--json").output)["items"]
    assert {
        "id": reseller["id"],
        "name": "R",
        "kind": "indirect-reseller",
        "providerId": provider["id"],
        "country": "DE",
    } in listed


def test_a_partners_country_is_checked_and_can_be_set_later(runner):
    unknown = invoke(
        runner, "partners", "create", "--name", "X", "--kind", "direct", "--country", "XX"
    )
    assert unknown.exit_code != 0
    assert "'XX' is not an ISO 3166 country code" in unknown.output
    made = create(runner, "--name", "Later", "--kind", "direct")
    listed = json.loads(invoke(runner, "partners", "list", "--json").output)["items"]
    assert [p["country"] for p in listed if p["id"] == made["id"]] == [None]
    for bad in ("", "XX", "USA"):
        refused = invoke(runner, "partners", "country", made["id"], bad)
        assert refused.exit_code != 0, bad
    done = invoke(runner, "partners", "country", made["id"], "se")
    assert done.exit_code == 0, done.output
    listed = json.loads(invoke(runner, "partners", "list", "--json").output)["items"]
    assert [p["country"] for p in listed if p["id"] == made["id"]] == ["SE"]


def test_unknown_kind_is_refused(runner):
    result = invoke(runner, "partners", "create", "--name", "X", "--kind", "wholesale")
    assert result.exit_code == 2
    assert "wholesale" in result.output


def test_keys_create_list_revoke(runner, client):
    partner = create(runner, "--name", "Keys", "--kind", "direct")
    made = json.loads(
        invoke(
            runner, "partners", "keys", "create", partner["id"], "--label", "ci", "--json"
        ).output
    )
    headers = {"Authorization": f"Bearer {made['apiKey']}"}
    assert client.get("/v1/customers", headers=headers).status_code == 200

    listed = json.loads(
        invoke(runner, "partners", "keys", "list", "--partner", partner["id"], "--json").output
    )["items"]
    assert len(listed) == 2
    assert {k["label"] for k in listed} == {"first key", "ci"}
    assert all(k["revokedAt"] is None for k in listed)

    revoked = invoke(runner, "partners", "keys", "revoke", made["id"])
    assert revoked.exit_code == 0
    assert client.get("/v1/customers", headers=headers).status_code == 401
    first = {"Authorization": f"Bearer {partner['apiKey']}"}
    assert client.get("/v1/customers", headers=first).status_code == 200
    listed = json.loads(invoke(runner, "partners", "keys", "list", "--json").output)["items"]
    assert [k["revokedAt"] is not None for k in listed].count(True) == 1


def test_revoke_by_prefix_and_unknown_key(runner, client):
    partner = create(runner, "--name", "Prefix", "--kind", "direct")
    assert invoke(runner, "partners", "keys", "revoke", partner["apiKey"][:12]).exit_code == 0
    headers = {"Authorization": f"Bearer {partner['apiKey']}"}
    assert client.get("/v1/customers", headers=headers).status_code == 401
    unknown = invoke(runner, "partners", "keys", "revoke", "nope")
    assert unknown.exit_code == 1
    assert "No API key" in unknown.output


def test_keys_create_for_unknown_partner(runner):
    result = invoke(runner, "partners", "keys", "create", "nope")
    assert result.exit_code == 1
    assert "No partner" in result.output


@pytest.mark.parametrize("secret", ["", "short"])
def test_bad_secret_key_stops_the_command_with_a_clear_message(runner, secret):
    result = runner.invoke(main, ["db", "upgrade"], env={"PORTAL_SECRET_KEY": secret})
    assert result.exit_code == 1
    assert "PORTAL_SECRET_KEY" in result.output
    assert "Traceback" not in result.output


def test_broken_catalog_stops_the_command_naming_the_line(runner, tmp_path):
    broken = tmp_path / "catalog.tsv"
    broken.write_text("# comment\nagreement\tX\n")
    result = runner.invoke(main, ["db", "upgrade"], env={"PORTAL_AGREEMENT_CATALOG": str(broken)})
    assert result.exit_code == 1
    assert "line 2" in result.output
