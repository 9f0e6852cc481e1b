"""Sign-in limits hold across the worker processes of a real server when they share Redis."""

from __future__ import annotations

import http.cookiejar
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

import redis

from tests.test_serve import free_port, stop, wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"


def attempt(base: str, user_name: str, password: str) -> int:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base}/signin", timeout=10) as page:
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode()).group(1)
    data = urllib.parse.urlencode(
        {"csrf_token": token, "user_name": user_name, "password": password}
    ).encode()
    request = urllib.request.Request(f"{base}/signin", data=data)
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "serve", "--port", str(port)],
        env={**env, "PORTAL_BASE_URL": f"http://127.0.0.1:{port}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/signin", process)
    return process, base


def test_failed_sign_ins_are_counted_across_processes(api, cli_env):
    """Two separate servers stand for two workers: what they share is Redis, nothing else."""
    customer = api.create_customer()
    other = api.create_customer()
    prefix = f"portal-test-{uuid.uuid4().hex}"
    env = {
        **os.environ,
        **cli_env,
        "PORTAL_RATELIMIT_STORAGE_URI": REDIS_URL,
        "PORTAL_RATELIMIT_KEY_PREFIX": prefix,
        "PORTAL_SERVE_WORKERS": "1",
    }
    servers = []
    try:
        servers = [start_server(env), start_server(env)]
        (_, first), (_, second) = servers
        user = customer["userCredentials"]["userName"]
        codes = [attempt(base, user, f"wrong {n}") for n, base in enumerate([first, second] * 4)]
        # Five failures in all, alternating between the two processes.
        assert codes == [401] * 5 + [429] * 3, codes
        # The right password is refused too while the account is locked ...
        assert attempt(first, user, customer["userCredentials"]["password"]) == 429
        # ... and another account is not affected.
        other_user = other["userCredentials"]["userName"]
        assert attempt(second, other_user, other["userCredentials"]["password"]) == 200
    finally:
        outputs = [stop(process) for process, _ in servers]
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()
    assert not any("Traceback" in output for output in outputs)
