"""The wheel is the portal: built, installed (not editable) into a clean virtual environment, and
started from another folder, it serves its pages in every language and its static files, with
catalogs compiled at build time (nothing is compiled at start)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from portal import ROOT
from tests.test_serve import free_port, stop, wait_for

pytestmark = pytest.mark.slow


def run(*command: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", target, ROOT)
    (built,) = target.glob("portal-*.whl")
    return built


def test_the_wheel_carries_templates_static_files_and_compiled_catalogs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped_templates = {
        "portal/" + str(p.relative_to(ROOT)) for p in (ROOT / "templates").rglob("*") if p.is_file()
    }
    assert shipped_templates <= names
    languages = {p.name for p in (ROOT / "locales").iterdir() if p.is_dir()}
    assert {f"portal/locales/{lang}/LC_MESSAGES/messages.mo" for lang in languages} <= names
    assert not any(n.endswith(".po") for n in names)  # nothing left to compile
    assert {
        "portal/static/portal.css",
        "portal/web/api/openapi.json",
        "portal/core/catalog.tsv",
    } <= (names)
    assert not any("_build" in n or "/tests/" in n for n in names)


def test_an_installed_wheel_serves_from_anywhere(wheel, tmp_path):
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    installed = run(python, "-c", "import portal; print(portal.PACKAGE)", cwd=elsewhere).strip()
    assert str(ROOT) not in installed  # the wheel's copy, not this checkout

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(PORTAL_INSTANCE_PATH=str(tmp_path / "instance"), PYTHONDONTWRITEBYTECODE="1")
    process = subprocess.Popen(
        [venv / "bin" / "portal", "serve", "--port", str(port), "--workers", "1"],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/signin", process)
        for language, words in {"de": "Anmelden", "ja": "サインイン", "ar": "تسجيل الدخول"}.items():
            request = urllib.request.Request(
                f"{base}/signin", headers={"Accept-Language": language}
            )
            with urllib.request.urlopen(request, timeout=10) as page:  # noqa: S310 - loopback
                assert words in page.read().decode(), language
        with urllib.request.urlopen(f"{base}/static/portal.css", timeout=10) as sheet:  # noqa: S310
            assert sheet.status == 200
    finally:
        output = stop(process)
    assert "Traceback" not in output
    assert "compil" not in output.lower()  # the catalogs came compiled
    assert not (tmp_path / "instance" / "locales").exists()
