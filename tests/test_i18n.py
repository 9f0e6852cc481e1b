"""Translations: the catalogs' tooling (``portal i18n``), its checks, and compiling at start.

Catalogs with problems are seeded in a copy of ``locales/`` under the test's own folder; the
project's own catalogs must pass ``portal i18n check`` as they are.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import pytest
from babel.messages.plurals import get_plural
from click.testing import CliRunner
from flask_babel import force_locale

from portal import LOCALES, ROOT
from portal.cli import main
from portal.core.catalog import CUSTOMER_AGREEMENT
from portal.i18n import catalogs, checks, extraction, files, languages, tooling, wording


def quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def translate(po: Path, texts: dict[str, str], fuzzy: tuple[str, ...] = ()) -> None:
    """Fill in msgstr lines as a translator would, in the file itself."""
    content = po.read_text(encoding="utf-8")
    for msgid, msgstr in texts.items():
        entry = f'msgid "{quoted(msgid)}"\nmsgstr ""\n'
        assert entry in content, msgid
        flag = "#, fuzzy\n" if msgid in fuzzy else ""
        content = content.replace(
            entry, f'{flag}msgid "{quoted(msgid)}"\nmsgstr "{quoted(msgstr)}"\n'
        )
    po.write_text(content, encoding="utf-8")
    newer_than_mo(po)


def newer_than_mo(po: Path) -> None:
    """Make sure the edit counts as newer than the compiled catalog, whatever the clock's grain."""
    mo = po.with_suffix(".mo")
    if mo.exists():
        later = mo.stat().st_mtime_ns + 2_000_000_000
        os.utime(po, ns=(later, later))


def line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line == text:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def msgid_line(po: Path, msgid: str) -> int:
    return line_of(po, f'msgid "{quoted(msgid)}"')


@pytest.fixture
def i18n_runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, locales: Path | None, *args: str):
    env = {"PORTAL_LOCALES_DIR": str(locales)} if locales else {}
    return runner.invoke(main, ["i18n", *args], env=env, catch_exceptions=False)


def checked(runner: CliRunner, locales: Path) -> list[str]:
    """``portal i18n check``'s problem lines; it must have failed."""
    result = run(runner, locales, "check")
    assert result.exit_code == 1, result.output
    return [line for line in result.stdout.splitlines() if line]


# --- the project's catalogs ---------------------------------------------------------------------


def test_the_projects_catalogs_pass_the_check(i18n_runner):
    """Whoever changes a user-facing string runs `portal i18n extract`; this fails until then."""
    result = run(i18n_runner, None, "check")
    assert result.exit_code == 0, result.output
    assert "no problems" in result.output


def test_the_template_is_stable_and_keeps_translator_comments(tmp_path):
    first = files.render(extraction.extract(ROOT))
    second = files.render(extraction.extract(ROOT))
    assert first == second
    text = first.decode()
    assert "POT-Creation-Date" not in text
    assert "Generated-By" not in text
    assert not re.search(r"^#:", text, re.MULTILINE)  # no locations, so no churn from line moves
    # A comment inside the gettext call (Python) and one in a template, both for translators.
    assert "#. Translators: the subject of the invitation email.\n" in text
    assert "#. Translators: the button that records the acceptance of the agreement.\n" in text
    # Flask-Babel's lazy_gettext strings are extracted too.
    assert 'msgid "Microsoft Customer Agreement"' in text


def test_extract_writes_the_template_and_reports_when_it_is_current(i18n_runner, tmp_path):
    target = tmp_path / "locales"
    result = run(i18n_runner, target, "extract")
    assert result.exit_code == 0, result.output
    assert "written" in result.output
    assert (target / "messages.pot").read_bytes() == (LOCALES / "messages.pot").read_bytes()
    again = run(i18n_runner, target, "extract")
    assert "already up to date" in again.output


# --- what check reports ---------------------------------------------------------------------------


def test_a_fresh_catalog_passes_and_untranslated_or_fuzzy_strings_are_no_problem(
    i18n_runner, locales, german
):
    translate(
        german, {"Sign in": "Anmelden", "Hello %(name)s,": "Hallo,"}, fuzzy=("Hello %(name)s,",)
    )
    result = run(i18n_runner, locales, "check")
    assert result.exit_code == 0, result.output
    assert "1 catalogs checked" in result.output


def test_check_names_a_removed_placeholder(i18n_runner, locales, german):
    translate(german, {"Hello %(name)s,": "Hallo,"})
    where = f"{files.shown(german)}:{msgid_line(german, 'Hello %(name)s,')}:"
    assert f"{where} placeholders differ in 'Hello %(name)s,': missing %(name)s" in checked(
        i18n_runner, locales
    )


def test_check_names_a_misspelt_or_unnamed_placeholder_in_a_plural_form(
    i18n_runner, locales, german
):
    with german.open("a", encoding="utf-8") as f:
        f.write(
            '\nmsgid "%(num)d file"\nmsgid_plural "%(num)d files"\n'
            'msgstr[0] "%(num)d Datei"\nmsgstr[1] "%(nun)d Dateien"\n'
            '\nmsgid "%(num)d day"\nmsgid_plural "%(num)d days"\n'
            'msgstr[0] "%d Tag"\nmsgstr[1] "%(num)d Tage"\n'
        )
    lines = checked(i18n_runner, locales)
    file_line = msgid_line(german, "%(num)d file")
    day_line = msgid_line(german, "%(num)d day")
    shown = files.shown(german)
    assert (
        f"{shown}:{file_line}: placeholders differ in msgstr[1] of '%(num)d file': missing "
        "%(num)d; not in the source: %(nun)d"
    ) in lines
    assert (
        f"{shown}:{day_line}: placeholders differ in msgstr[0] of '%(num)d day': missing "
        "%(num)d; unnamed %d"
    ) in lines


def test_check_refuses_a_script_an_event_attribute_and_a_javascript_link(
    i18n_runner, locales, german
):
    translate(
        german,
        {
            "Document": "Dokument<script>alert(1)</script>",
            "Download it": '<img src=x onerror="alert(1)">Herunterladen',
            "Read the agreement": '<a href="javascript:alert(1)">Vereinbarung lesen</a>',
        },
    )
    lines = checked(i18n_runner, locales)
    shown = files.shown(german)
    document = f"{shown}:{msgid_line(german, 'Document')}:"
    assert f"{document} 'Document' contains <script" in lines
    assert (
        f"{document} HTML tags differ in 'Document': not in the source: </script>, <script>"
        in lines
    )
    download = f"{shown}:{msgid_line(german, 'Download it')}:"
    assert f"{download} 'Download it' contains an on…= event attribute" in lines
    read = f"{shown}:{msgid_line(german, 'Read the agreement')}:"
    assert f"{read} 'Read the agreement' contains javascript:" in lines
    assert f"{read} HTML tags differ in 'Read the agreement': not in the source: </a>, <a>" in lines


def test_check_refuses_a_lone_percent_sign(i18n_runner, locales, german):
    translate(german, {"Sign in": "Anmelden 100%"})
    where = f"{files.shown(german)}:{msgid_line(german, 'Sign in')}:"
    assert f"{where} 'Sign in' is not a valid format string (write a lone % as %%)" in checked(
        i18n_runner, locales
    )


def test_check_names_a_stale_template_and_what_changed(i18n_runner, locales):
    pot = locales / "messages.pot"
    text = pot.read_text(encoding="utf-8")
    text = text.replace('msgid "Sign in"\nmsgstr ""\n\n', "")
    text += '\nmsgid "A string the code no longer has"\nmsgstr ""\n'
    pot.write_text(text, encoding="utf-8")
    lines = checked(i18n_runner, locales)
    shown = files.shown(pot)
    assert any(
        line.startswith(f"{shown}:1: stale: the strings in the code changed") for line in lines
    )
    gone = line_of(pot, 'msgid "A string the code no longer has"')
    assert f"{shown}:{gone}: no longer in the code: 'A string the code no longer has'" in lines
    assert any(
        re.fullmatch(
            r"templates/[\w/]+\.html:\d+: new string, not in messages\.pot yet: 'Sign in'", line
        )
        for line in lines
    ), lines


def test_check_names_a_comment_only_change_of_the_template(i18n_runner, locales):
    pot = locales / "messages.pot"
    text = pot.read_text(encoding="utf-8")
    pot.write_text(text.replace("#. Translators: the subject of the invitation email.\n", ""))
    lines = checked(i18n_runner, locales)
    assert lines[0].startswith(
        f"{files.shown(pot)}:1: stale: the strings in the code changed (0 new, 0 gone"
    )


def test_check_names_a_plural_message_with_a_form_missing(i18n_runner, locales, german):
    with german.open("a", encoding="utf-8") as f:
        f.write('\nmsgid "%(num)d file"\nmsgid_plural "%(num)d files"\nmsgstr[0] "%(num)d Datei"\n')
    where = f"{files.shown(german)}:{msgid_line(german, '%(num)d file')}:"
    assert (
        f"{where} broken plural form in '%(num)d file': de needs 2 forms, msgstr[0] to msgstr[1]; "
        "the file has msgstr[0]"
    ) in checked(i18n_runner, locales)


def test_a_broken_plural_message_is_left_out_and_the_rest_compiles(i18n_runner, locales, german):
    translate(german, {"Sign in": "Anmelden"})
    with german.open("a", encoding="utf-8") as f:
        f.write('\nmsgid "%(num)d file"\nmsgid_plural "%(num)d files"\nmsgstr[0] "%(num)d Datei"\n')
    result = run(i18n_runner, locales, "compile")
    assert result.exit_code == 1
    assert "broken plural form in '%(num)d file'" in result.output
    assert "de: 1 translations compiled" in result.output


def test_check_names_a_plural_message_with_a_form_too_many(i18n_runner, locales, german):
    with german.open("a", encoding="utf-8") as f:
        f.write(
            '\nmsgid "%(num)d file"\nmsgid_plural "%(num)d files"\nmsgstr[0] "%(num)d Datei"\n'
            'msgstr[1] "%(num)d Dateien"\nmsgstr[2] "%(num)d Dateien"\n'
        )
    lines = checked(i18n_runner, locales)
    assert any(
        line.startswith(
            f"{files.shown(german)}:{msgid_line(german, '%(num)d file')}: broken plural form"
        )
        for line in lines
    ), lines


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "nplurals=2; plural=(n != 1;",
            "invalid Plural-Forms header 'nplurals=2; plural=(n != 1;'",
        ),
        ("nplurals=x; plural=(n != 1);", "invalid Plural-Forms header"),
        (
            "nplurals=2; plural=(n > 1 ? 2 : 0);",
            "Plural-Forms gives no valid form for n=2 with nplurals=2",
        ),
        ("nplurals=3; plural=(n != 1);", "Plural-Forms says nplurals=3, but de has 2 plural forms"),
    ],
)
def test_check_names_a_broken_plural_forms_header(i18n_runner, locales, german, header, expected):
    content = german.read_text(encoding="utf-8")
    good = '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"'
    assert good in content
    german.write_text(content.replace(good, f'"Plural-Forms: {header}\\n"'), encoding="utf-8")
    lines = checked(i18n_runner, locales)
    header_line = line_of(german, '"Plural-Forms: ' + header + '\\n"')
    where = f"{files.shown(german)}:{header_line}:"
    assert any(line.startswith(f"{where} {expected}") for line in lines), lines


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ('msgstr "Anmelden', "cannot be compiled: not a PO keyword followed by a quoted string"),
        ('msgtxt "Anmelden"', "cannot be compiled: not a PO keyword followed by a quoted string"),
        ('msgstr "Anmelden"\n"und "weiter"', "cannot be compiled: not a properly quoted string"),
    ],
)
def test_check_names_a_catalog_that_does_not_compile(
    i18n_runner, locales, german, broken, expected
):
    content = german.read_text(encoding="utf-8")
    german.write_text(
        content.replace('msgid "Sign in"\nmsgstr ""\n', f'msgid "Sign in"\n{broken}\n'),
        encoding="utf-8",
    )
    bad_line = msgid_line(german, "Sign in") + broken.count("\n") + 1
    lines = checked(i18n_runner, locales)
    assert any(
        line.startswith(f"{files.shown(german)}:{bad_line}: {expected}") for line in lines
    ), lines


def test_check_names_a_duplicate_message_and_a_catalog_not_in_utf8(i18n_runner, locales, german):
    with german.open("a", encoding="utf-8") as f:
        f.write('\nmsgid "Sign in"\nmsgstr "Anmelden"\n')
    first, second = [
        n for n, line in enumerate(german.read_text().splitlines(), 1) if line == 'msgid "Sign in"'
    ]
    shown = files.shown(german)
    assert (
        f"{shown}:{second}: cannot be compiled: the same msgid as line {first}: 'Sign in'"
        in checked(i18n_runner, locales)
    )
    german.write_bytes(german.read_bytes().replace(b'"Anmelden"', b'"Gr\xfc\xdfe"'))
    assert any(
        line.startswith(f"{shown}:{second + 1}: cannot be compiled: not UTF-8")
        for line in checked(i18n_runner, locales)
    )


def test_check_names_a_regional_catalog_that_hides_the_language(i18n_runner, locales):
    tooling.init_locale(locales, "de-DE")
    regional = files.po_path(locales, "de_DE")
    assert (
        f"{files.shown(regional)}:1: gettext reads de_DE/ for pages in de too, before de/: "
        "keep one of them (move its translations to de/)"
    ) in checked(i18n_runner, locales)


def test_check_names_an_unnamed_placeholder_in_the_code(tmp_path):
    root = tmp_path / "project"
    (root / "portal").mkdir(parents=True)
    shutil.copy(ROOT / "babel.cfg", root / "babel.cfg")
    (root / "portal" / "bad.py").write_text(
        "from flask_babel import gettext\n\n\ndef f(n):\n    return gettext('%s files') % n\n"
    )
    locales = root / "locales"
    locales.mkdir()
    extraction.write_template(root, locales)
    problems = [str(p) for p in checks.check(root, locales)]
    assert problems == [
        f"{files.shown(root / 'portal' / 'bad.py')}:5: unnamed placeholder %s in "
        "'%s files': use named ones, %(name)s, so translators can move them"
    ]


# --- stats, init, update ----------------------------------------------------------------------


def test_stats_counts_translated_strings_and_not_fuzzy_ones(i18n_runner, locales, german):
    total = len([m for m in files.read(locales / "messages.pot") if m.id])
    translate(
        german,
        {"Sign in": "Anmelden", "Password": "Passwort", "User name": "Benutzername"},
        fuzzy=("User name",),
    )
    result = run(i18n_runner, locales, "stats")
    assert result.exit_code == 0, result.output
    percent = 100 * 2 / total
    assert re.fullmatch(rf"de\s+2/{total}\s+{percent:.1f}%  \(1 fuzzy\)\n", result.output), (
        result.output
    )


def test_init_adds_a_language_to_the_switcher_without_code_changes(i18n_runner, locales, make_app):
    result = run(i18n_runner, locales, "init", "fr")
    assert result.exit_code == 0, result.output
    po = files.po_path(locales, "fr")
    assert po.is_file()
    assert '"Language: fr\\n"' in po.read_text()
    # The language's rule as the CLDR data of the installed Babel has it (French: three forms
    # since Babel 2.19, "many" being the millions).
    unwrapped = po.read_text().replace('"\n"', "")
    assert f"\\nPlural-Forms: {get_plural('fr').plural_forms}\\n" in unwrapped
    app = make_app(BABEL_TRANSLATION_DIRECTORIES=str(locales))
    with app.app_context():
        assert languages.available_locales() == ["de", "en", "fr"]
    page = app.test_client().get("/signin").get_data(as_text=True)
    assert '<option value="fr" lang="fr">Français</option>' in page


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("de", "exists already"),
        ("en", "en is the source language"),
        ("xx-nonsense", "is not a language Babel knows"),
    ],
)
def test_init_refuses_what_it_cannot_add(i18n_runner, locales, tag, expected):
    result = run(i18n_runner, locales, "init", tag)
    assert result.exit_code == 1
    assert expected in result.output


def test_update_brings_catalogs_in_step_with_the_template(i18n_runner, locales, german):
    translate(german, {"Sign in": "Anmelden"})
    content = german.read_text(encoding="utf-8")
    german.write_text(
        content.replace('msgid "Password"\nmsgstr ""\n\n', "")
        + '\nmsgid "A string the code no longer has"\nmsgstr "Weg"\n',
        encoding="utf-8",
    )
    result = run(i18n_runner, locales, "update")
    assert result.exit_code == 0, result.output
    updated = german.read_text(encoding="utf-8")
    assert 'msgid "Password"\nmsgstr ""\n' in updated
    assert 'msgid "Sign in"\nmsgstr "Anmelden"\n' in updated
    assert '#~ msgid "A string the code no longer has"\n#~ msgstr "Weg"\n' in updated
    assert "POT-Creation-Date" not in updated
    assert run(i18n_runner, locales, "check").exit_code == 0
    assert "already in step" in run(i18n_runner, locales, "update").output


def test_compile_writes_mo_files_and_fails_on_left_out_translations(i18n_runner, locales, german):
    translate(german, {"Sign in": "Anmelden", "Hello %(name)s,": "Hallo %(nom)s,"})
    result = run(i18n_runner, locales, "compile")
    assert result.exit_code == 1
    assert "placeholders differ in 'Hello %(name)s,'" in result.output
    assert "de: 1 translations compiled" in result.output
    assert german.with_suffix(".mo").is_file()


# --- the running portal -------------------------------------------------------------------------


def signin_page(app, language: str = "de") -> str:
    response = app.test_client().get("/signin", headers={"Accept-Language": language})
    assert response.status_code == 200
    return str(response.get_data(as_text=True))


def test_an_edited_catalog_is_compiled_at_start(locales, german, make_app):
    translate(german, {"Sign in": "Anmelden"})
    page = signin_page(make_app(BABEL_TRANSLATION_DIRECTORIES=str(locales)))
    assert "<h1>Anmelden</h1>" in page
    assert '<html lang="de"' in page

    content = german.read_text(encoding="utf-8")
    german.write_text(content.replace('msgstr "Anmelden"', 'msgstr "Einloggen"'), encoding="utf-8")
    newer_than_mo(german)
    assert "<h1>Einloggen</h1>" in signin_page(make_app(BABEL_TRANSLATION_DIRECTORIES=str(locales)))


def test_portal_locales_dir_points_the_portal_at_another_folder(
    locales, german, make_app, monkeypatch
):
    translate(german, {"Sign in": "Anmelden"})
    monkeypatch.setenv("PORTAL_LOCALES_DIR", str(locales))
    assert "<h1>Anmelden</h1>" in signin_page(make_app())


def test_a_translation_with_problems_is_left_out_and_the_english_shows(
    locales, german, make_app, caplog
):
    translate(
        german,
        {
            "Sign in": "<script>alert(1)</script>Anmelden",
            "User name": "Benutzername %(who)s",
            "Password": "Passwort",
        },
    )
    with caplog.at_level(logging.ERROR):
        page = signin_page(make_app(BABEL_TRANSLATION_DIRECTORIES=str(locales)))
    assert "<script>" not in page
    assert "<h1>Sign in</h1>" in page
    assert ">User name</label>" in page
    assert ">Passwort</label>" in page
    assert "'Sign in' contains <script (left out: the English text shows instead)" in caplog.text


def test_a_read_only_locales_folder_is_compiled_into_the_instance_folder(
    locales, german, make_app, monkeypatch, tmp_path
):
    translate(german, {"Sign in": "Anmelden"})
    german.with_suffix(".mo").unlink()
    write = files.write_atomically

    def read_only(path: Path, data: bytes) -> None:
        if path.is_relative_to(locales):
            raise PermissionError(13, "Read-only file system", str(path))
        write(path, data)

    monkeypatch.setattr(catalogs, "write_atomically", read_only)
    app = make_app(BABEL_TRANSLATION_DIRECTORIES=str(locales))
    compiled = tmp_path / "instance" / "locales" / "de" / "LC_MESSAGES" / "messages.mo"
    assert compiled.is_file()
    assert app.config["BABEL_TRANSLATION_DIRECTORIES"] == f"{locales};{compiled.parents[2]}"
    assert "<h1>Anmelden</h1>" in signin_page(app)
    with app.app_context():
        assert languages.available_locales() == ["de", "en"]


def test_a_missing_locales_folder_is_logged_at_start(make_app, tmp_path, caplog):
    missing = tmp_path / "nowhere"
    with caplog.at_level(logging.WARNING):
        app = make_app(BABEL_TRANSLATION_DIRECTORIES=str(missing))
    assert f"Translations folder {missing} does not exist" in caplog.text
    assert "<h1>Sign in</h1>" in signin_page(app)


def test_preview_writes_the_invitation_and_the_pages(i18n_runner, locales, german, tmp_path):
    translate(german, {"Sign in": "Anmelden", "Hello %(name)s,": "Hallo %(name)s,"})
    out = tmp_path / "preview"
    result = run(i18n_runner, locales, "preview", "de", "--out", str(out))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "acceptance_confirmation.html",
            "acceptance_confirmation.txt",
            "account.html",
            "account_partner_removed.html",
            "agreement.html",
            "forgot.html",
            "invitation.html",
            "invitation.txt",
            "landing.html",
            "password.html",
            "password_reset.html",
            "password_reset.txt",
            "portal.css",
            "relationship.html",
            "relationship_removed.html",
            "relationship_removed.txt",
            "relationship_request.html",
            "relationship_request.txt",
            "remove_partner.html",
            "reset.html",
            "signin.html",
        ]
    )
    assert "Northwind Traders" in (out / "relationship.html").read_text()
    assert "/password/reset/" in (out / "password_reset.txt").read_text()
    invitation = (out / "invitation.txt").read_text()
    assert invitation.startswith("Subject: Demo Partner asks Contoso Demo to accept")
    assert "Hallo Avery Demo," in invitation
    assert "http://127.0.0.1:8000/invite/" in invitation
    assert "Hallo Avery Demo," in (out / "invitation.html").read_text()
    signin = (out / "signin.html").read_text()
    assert "<h1>Anmelden</h1>" in signin
    assert 'href="portal.css"' in signin
    assert "Agreement" in (out / "agreement.html").read_text()
    assert '<html lang="de"' in (out / "account.html").read_text()


def test_preview_of_a_language_without_catalog_says_how_to_add_it(i18n_runner, locales, tmp_path):
    result = run(i18n_runner, locales, "preview", "fr", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "portal i18n init fr" in result.output
    assert not (tmp_path / "out").exists()


def test_the_language_switcher_selects_the_page_language_only(
    i18n_runner, make_app, locales, german
):
    translate(german, {"Sign in": "Anmelden"})
    assert run(i18n_runner, locales, "init", "fr").exit_code == 0
    app = make_app(BABEL_TRANSLATION_DIRECTORIES=str(locales))
    for language, selected in (("de", "Deutsch"), ("fr", "Français"), ("de", "Deutsch")):
        page = signin_page(app, language)
        assert page.count(" selected>") == 1
        assert f'<option value="{language}" lang="{language}" selected>{selected}</option>' in page
        assert '<option value="en" lang="en">English</option>' in page


def test_template_strings_follow_the_locale_of_each_render(make_app, locales, german):
    from flask import render_template_string
    from flask_babel import force_locale

    translate(german, {"Sign in": "Anmelden"})
    app = make_app(BABEL_TRANSLATION_DIRECTORIES=str(locales))
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert render_template_string('{{ _("Sign in") }}') == "Sign in"
        with force_locale("de"):
            assert render_template_string('{{ _("Sign in") }}') == "Anmelden"
        assert render_template_string('{{ gettext("Sign in") }}') == "Sign in"


def test_template_strings_are_format_strings_with_escaped_values(app):
    from flask import render_template_string

    with app.test_request_context():
        html = render_template_string('{{ _("Hi %(name)s, 100%% done", name="<b>") }}')
        assert html == "Hi &lt;b&gt;, 100% done"
        assert render_template_string('{{ _("100%% done") }}') == "100% done"
        text = '{% autoescape false %}{{ _("Hi %(name)s", name="<b>") }}{% endautoescape %}'
        assert render_template_string(text) == "Hi <b>"
        plural = '{{ ngettext("%(num)d page", "%(num)d pages", 2) }}'
        assert render_template_string(plural) == "2 pages"


@pytest.mark.parametrize(
    ("candidates", "available", "expected"),
    [
        (["de-AT"], ["de", "en"], "de"),
        (["pt-BR", "de"], ["de", "en", "pt_BR"], "pt_BR"),
        (["pt-BR"], ["de", "en"], "en"),
        (["zh-Hans-CN"], ["en", "zh_Hans"], "zh_Hans"),
        ([None, "", "not a tag!", "xx-YY", "fr"], ["en", "fr"], "fr"),
        (["fr"], ["en"], "en"),
    ],
)
def test_best_locale(candidates, available, expected):
    assert languages.best_locale(candidates, available) == expected


def test_the_page_frame_follows_the_language_and_where_the_portal_is_mounted(app):
    for base_url, prefix in [("http://localhost/", ""), ("http://localhost/portal/", "/portal")]:
        for language, direction in [("ar", "rtl"), ("de-DE", "ltr")]:
            with app.test_request_context(
                "/signin", base_url=base_url, headers={"Accept-Language": language}
            ):
                frame = languages.page_frame()
                assert (frame.lang, frame.dir) == (language[:2], direction)
                assert frame.stylesheet == f"{prefix}/static/portal.css"
                assert frame.signout == f"{prefix}/signout"
                code = language[:2]
                assert f'value="{code}" lang="{code}" selected' in frame.language_options
                assert languages.page_frame() is frame  # made once
    page = app.test_client().get("/signin", headers={"Accept-Language": "ar"}).get_data(True)
    assert '<html lang="ar" dir="rtl">' in page


def test_agreement_names_follow_the_page_language_and_each_apps_catalogs(
    app, make_app, locales, german
):
    with app.test_request_context():
        for _ in range(2):  # the second time from what the first looked up
            with force_locale("de"):
                assert wording.agreement_name(CUSTOMER_AGREEMENT) == "Microsoft-Kundenvereinbarung"
            with force_locale("ar"):
                assert wording.agreement_name(CUSTOMER_AGREEMENT) == "اتفاقية عملاء Microsoft"
            assert wording.agreement_name(CUSTOMER_AGREEMENT) == "Microsoft Customer Agreement"
            assert wording.agreement_name("unknown", "As the catalog says") == "As the catalog says"
    translate(german, {"Microsoft Customer Agreement": "Eigene Übersetzung"})
    other = make_app(BABEL_TRANSLATION_DIRECTORIES=str(locales))
    with other.test_request_context(), force_locale("de"):
        assert wording.agreement_name(CUSTOMER_AGREEMENT) == "Eigene Übersetzung"


@pytest.mark.slow
def test_preview_serve_shows_the_pages_and_follows_the_catalog(locales, german, tmp_path):
    """`portal i18n preview de --serve`: the pages on a local server, written again when the
    catalog is saved, and told to reload (they ask /__version)."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.test_serve import free_port

    translate(german, {"Sign in": "Anmelden"})
    port = free_port()
    env = {**os.environ, "PORTAL_LOCALES_DIR": str(locales)}
    command = [sys.executable, "-m", "portal.cli", "i18n", "preview", "de", "--serve"]
    out = tmp_path / "out"
    process = subprocess.Popen(
        [*command, "--port", str(port), "--out", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def fetch(path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:  # noqa: S310 - loopback
            return str(answer.read().decode())

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                index = fetch("/")
                break
            except OSError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "the preview did not start"
                time.sleep(0.3)
        assert 'href="/signin.html"' in index
        page = fetch("/signin.html")
        assert "<h1>Anmelden</h1>" in page
        assert "/__version" in page  # it reloads itself
        version = fetch("/__version")
        saved = german.read_text(encoding="utf-8")
        german.write_text(
            saved.replace(
                'msgid "Sign in"\nmsgstr "Anmelden"', 'msgid "Sign in"\nmsgstr "Einloggen"'
            ),
            encoding="utf-8",
        )
        newer_than_mo(german)
        while fetch("/__version") == version:
            assert time.monotonic() < deadline, "the preview did not follow the catalog"
            time.sleep(0.2)
        assert "<h1>Einloggen</h1>" in fetch("/signin.html")
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{port}/" in output
    assert process.returncode == 0, output
