"""``portal serve`` and ``portal demo`` start a real server that migrates and answers."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

PORTAL = [sys.executable, "-m", "portal.cli"]

#: Real servers: a few seconds each.
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen, seconds: float = 30) -> bytes:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                return bytes(response.read())
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {seconds} s")


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output


@pytest.fixture
def fresh_env(tmp_path: Path) -> dict[str, str]:
    """An environment with only the embedded defaults: a new instance folder, nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_INSTANCE_PATH"] = str(tmp_path / "instance")
    return env


def test_serve_migrates_and_answers_through_gunicorn(fresh_env, tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [*PORTAL, "serve", "--port", str(port)],
        env=fresh_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        document = json.loads(wait_for(f"http://127.0.0.1:{port}/v1/openapi.json", process))
        assert document["openapi"].startswith("3.1")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/agreements",
            headers={
                "Authorization": "Bearer ptl_wrong",
                "MS-RequestId": "5c1e9a52-aaaa-4bbb-8ccc-0123456789ab",
                "MS-CorrelationId": "0d9b2f6e-dddd-4eee-8fff-0123456789ab",
            },
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)  # noqa: S310 - loopback
        refused.value.close()
        assert refused.value.code == 401  # the schema exists: the key was looked up
        # Its workers share the port (each has a socket of its own), but no other server may:
        # a second one on the same port, or a demo, stops at once, saying why, having done
        # nothing (its instance folder is not even made).
        other_env = {**fresh_env, "PORTAL_INSTANCE_PATH": str(tmp_path / "other")}
        for command in (["serve", "--port", str(port)], ["demo", "--port", str(port)]):
            second = subprocess.run(
                [*PORTAL, *command],
                env=other_env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert second.returncode == 1, second.stdout + second.stderr
            assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in second.stderr
            assert f"choose another port with --port, e.g. --port {port + 1}" in second.stderr
        assert not (tmp_path / "other").exists()
        assert wait_for(f"http://127.0.0.1:{port}/v1/openapi.json", process)  # still serving
    finally:
        output = stop(process)
    assert "gunicorn" in output.lower()
    # One line says where it listens, with the address (not gunicorn's empty one).
    assert f"Listening at: http://127.0.0.1:{port}" in output
    assert "Listening at:  (" not in output
    # The access log names the request by Partner Center's tracking ids.
    assert '"GET /v1/agreements HTTP/1.1" 401' in output
    assert (
        "ms-requestid=5c1e9a52-aaaa-4bbb-8ccc-0123456789ab "
        "ms-correlationid=0d9b2f6e-dddd-4eee-8fff-0123456789ab"
    ) in output


def run_demo(env: dict[str, str], port: int, *options: str) -> str:
    """Start ``portal demo``, wait until it answers, stop it; what it printed."""
    process = subprocess.Popen(
        [*PORTAL, "demo", "--port", str(port), *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/v1/openapi.json", process)
    finally:
        output = stop(process)
    return output


def in_python(env: dict[str, str], code: str) -> str:
    """What ``code`` prints, run in a Python of its own with ``env`` (the demo's settings)."""
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_demo_prints_what_to_open_and_the_printed_key_works(fresh_env):
    port = free_port()
    output = run_demo(fresh_env, port)
    key = re.search(r"API key:\s+(ptl_\S+)", output)
    customer = re.search(r"Demo customer: .* \(([0-9a-f-]{36})\)", output)
    assert key, output
    assert customer, output
    assert f"http://127.0.0.1:{port}/v1/customers/{customer.group(1)}/acceptanceStatus" in output
    link = re.search(rf"open\s+http://127\.0\.0\.1:{port}(/invite/\S+)", output)
    assert link, output
    assert "sign in   admin@contoso-demo.example / " in output
    # The demo data is there for the printed key (checked without a server).
    check = in_python(
        fresh_env,
        (
            "from portal import create_app\n"
            "c = create_app().test_client()\n"
            f"r = c.get('/v1/customers/{customer.group(1)}/acceptanceStatus', "
            f"headers={{'Authorization': 'Bearer {key.group(1)}'}})\n"
            "print(r.status_code, r.get_json()['state'])\n"
            f"r = c.get('{link.group(1)}')\n"
            "print(r.status_code, 'admin@contoso-demo.example' in r.get_data(as_text=True))"
        ),
    )
    assert check.split() == ["200", "invited", "200", "True"]
    # A dashboard sign-in, and where to read the invitation email in it.
    signin = re.search(r"sign in   (demo@demo-partner\.example) / (\S+)", output)
    assert signin, output
    assert f"open      http://127.0.0.1:{port}/dashboard/" in output
    screen = re.search(rf"the email http://127\.0\.0\.1:{port}(/dashboard/customers/\S+)", output)
    assert screen, output
    dashboard = in_python(
        fresh_env,
        (
            "import re\n"
            "from portal import create_app\n"
            "c = create_app({'TESTING': True}).test_client()\n"
            "form = c.get('/dashboard/signin').get_data(as_text=True)\n"
            'token = re.search(r\'name="csrf_token" value="([^"]+)\', form).group(1)\n'
            f"r = c.post('/dashboard/signin', data={{'email': '{signin.group(1)}', "
            f"'password': '{signin.group(2)}', 'csrf_token': token}})\n"
            "print(r.status_code, r.headers.get('Location'))\n"
            f"r = c.get('{screen.group(1)}')\n"
            "print(r.status_code, 'admin@contoso-demo.example' in r.get_data(as_text=True))"
        ),
    )
    assert dashboard.split() == ["302", "/dashboard/", "200", "True"]

    # A second run keeps the data (a new password); --fresh starts over with a new customer.
    again = run_demo(fresh_env, port)
    assert f"({customer.group(1)})" in again
    assert "Started over" not in again
    fresh = run_demo(fresh_env, port, "--fresh")
    assert "Started over: deleted" in fresh
    renewed = re.search(r"Demo customer: .* \(([0-9a-f-]{36})\)", fresh)
    assert renewed, fresh
    assert renewed.group(1) != customer.group(1)


def test_demo_fresh_leaves_a_named_database_alone(fresh_env, tmp_path):
    env = {**fresh_env, "PORTAL_DATABASE_URL": f"sqlite:///{tmp_path / 'mine.db'}"}
    result = subprocess.run(
        [*PORTAL, "demo", "--port", str(free_port()), "--fresh"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "--fresh deletes only the embedded default database" in result.stderr
    assert not (tmp_path / "mine.db").exists()
