"""How the wheel is built: setuptools, on a copy of the project that has ``templates/`` and the
compiled catalogs inside the package (``portal/templates``, ``portal/locales/*/LC_MESSAGES/
messages.mo``), so an installed portal needs no checkout beside it and compiles nothing at start.

In the checkout, ``templates/`` and ``locales/`` stay at the top level, where people edit them;
``portal/__init__.py`` looks inside the package first, then beside it. Named in
``pyproject.toml`` (``build-backend``, ``backend-path``); not part of the installed package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from setuptools import build_meta

# Everything but the wheel is setuptools' own.
from setuptools.build_meta import (  # noqa: F401 - the hooks a frontend may call
    build_editable,
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

#: What a wheel is built from; everything else of the checkout stays out of the copy.
SOURCES = ("pyproject.toml", "README.md", "portal")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "_build", "*.egg-info")


def _compile_catalogs(locales: Path, into: Path) -> None:
    """Each ``.po`` as a ``.mo`` (no fuzzy translations), with nothing else of ``locales/``."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in sorted(locales.glob("*/LC_MESSAGES/messages.po")):
        locale = po.parent.parent.name
        with po.open("rb") as handle:
            catalog = read_po(handle, locale=locale)
        mo = into / locale / "LC_MESSAGES" / "messages.mo"
        mo.parent.mkdir(parents=True, exist_ok=True)
        with mo.open("wb") as handle:
            write_mo(handle, catalog, use_fuzzy=False)


@contextlib.contextmanager
def _staged() -> Iterator[Path]:
    project = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="portal-wheel-") as folder:
        root = Path(folder)
        for name in SOURCES:
            source = project / name
            if source.is_dir():
                shutil.copytree(source, root / name, ignore=IGNORED)
            else:
                shutil.copy2(source, root / name)
        shutil.copytree(project / "templates", root / "portal" / "templates")
        _compile_catalogs(project / "locales", root / "portal" / "locales")
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(project)


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    target = os.path.abspath(wheel_directory)
    with _staged():
        return str(build_meta.build_wheel(target, config_settings, None))
