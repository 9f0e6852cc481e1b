"""Templates compiled once per language, their literal texts translated at compile time."""

from __future__ import annotations

import pytest
from flask import render_template, render_template_string
from flask_babel import force_locale
from jinja2 import Template

from portal.i18n import templating
from tests.test_i18n import translate


def template_of(app, locale: str, name: str = "signin.html") -> Template:
    with force_locale(locale):
        return app.jinja_env.get_template(name)


def test_each_language_has_its_own_compiled_templates(app):
    with app.test_request_context():
        german, english = template_of(app, "de"), template_of(app, "en")
        assert german.environment.locale == "de"
        assert english.environment.locale == "en"
        assert german is not english
        assert template_of(app, "de") is german  # compiled once
        # They share what the app's environment has, as an overlay does.
        assert german.environment.globals is app.jinja_env.globals
        assert german.environment.filters is app.jinja_env.filters


def test_literal_texts_are_translated_when_the_template_compiles(make_app, locales, german):
    translate(german, {"Sign in": "Anmelden"})
    app = make_app(BABEL_TRANSLATION_DIRECTORIES=str(locales))
    with app.test_request_context():
        environment = template_of(app, "de").environment
        code = environment.compile('<h1>{{ _("Sign in") }}</h1>', raw=True)
        assert "Anmelden" in code
        assert "Sign in" not in code  # no look-up left for render time
        assert (
            environment.from_string('<h1>{{ _("Sign in") }}</h1>').render() == "<h1>Anmelden</h1>"
        )
        with force_locale("de"):
            assert "<h1>Anmelden</h1>" in render_template("signin.html")
        with force_locale("en"):
            assert "<h1>Sign in</h1>" in render_template("signin.html")


#: Each as Jinja's own gettext has it at render time: a format string (``%%`` a percent sign),
#: HTML-safe when autoescaping, with escaped values.
SAME_AS_AT_RENDER_TIME = [
    ('{{ _("Hi %(name)s, 100%% done", name=who) }}', "Hi &lt;b&gt;, 100% done"),
    ('{{ _("100%% done") }}', "100% done"),
    ("{% trans name=who %}Hi {{ name }}{% endtrans %}", "Hi &lt;b&gt;"),
    ("{% trans %}Hi {{ who }}{% endtrans %}", "Hi &lt;b&gt;"),
    ('{% autoescape false %}{{ _("Hi %(name)s", name=who) }}{% endautoescape %}', "Hi <b>"),
    ('{{ _("Hi %(name)s", name=who)|length }}', "12"),  # of "Hi &lt;b&gt;"
    ('{{ ngettext("%(num)d page", "%(num)d pages", 2) }}', "2 pages"),
    ("{{ _(text) }}", "Skip to content"),
]


@pytest.mark.parametrize(("source", "expected"), SAME_AS_AT_RENDER_TIME)
def test_compiled_translations_mean_what_they_meant_at_render_time(app, source, expected):
    with app.test_request_context():
        environment = template_of(app, "en").environment
        values = {"who": "<b>", "text": "Skip to content"}
        assert environment.from_string(source).render(**values) == expected
        with force_locale("en"):  # the app's environment: looked up at render time
            assert render_template_string(source, **values) == expected


def test_translations_with_values_are_escaped_in_html_and_plain_in_text(app):
    source = '{{ _("%(company)s has been created with these sign-in details:", company=c) }}'
    with app.test_request_context():
        environment = template_of(app, "de").environment
        html = environment.from_string(source).render(c="<Praxis & Co>")
        assert html == "&lt;Praxis &amp; Co&gt; wurde mit diesen Anmeldedaten angelegt:"
        text = environment.from_string("{% autoescape false %}" + source + "{% endautoescape %}")
        assert (
            text.render(c="<Praxis & Co>")
            == "<Praxis & Co> wurde mit diesen Anmeldedaten angelegt:"
        )


def test_a_text_given_at_render_time_is_still_translated(app):
    with app.test_request_context():
        environment = template_of(app, "de").environment
        with force_locale("de"):
            translated = environment.from_string("{{ _(text) }}").render(text="Skip to content")
            assert translated == "Zum Inhalt springen"
            assert render_template_string('{{ _("Skip to content") }}') == translated


def test_a_language_without_translations_uses_the_apps_templates(make_app, locales):
    app = make_app(BABEL_TRANSLATION_DIRECTORIES=str(locales))  # English and German only
    with app.test_request_context():
        template = template_of(app, "fr")
        assert template.environment is app.jinja_env
        assert template.environment.locale is None
        with force_locale("fr"):
            assert "<h1>Sign in</h1>" in render_template("signin.html")


def test_a_text_that_is_no_format_string_fails_at_render_time_as_before(app):
    with app.test_request_context():
        environment = template_of(app, "en").environment
        template = environment.from_string('{{ _("all 100%") }}')  # compiles
        with pytest.raises(ValueError, match="format"):
            template.render()


def test_outside_a_request_templates_come_from_the_apps_environment(app):
    assert isinstance(app.jinja_env, templating.Environment)
    template = app.jinja_env.get_template("signin.html")
    assert template.environment is app.jinja_env


def test_a_render_sees_the_globals_as_jinja_gives_them(app):
    environment = app.jinja_env
    plain = environment.from_string("{{ greeting }} {{ name }}")
    assert isinstance(plain, templating.FlatGlobalsTemplate)
    environment.globals["greeting"] = "Hello"  # added after the template was made: seen
    try:
        assert plain.render(name="Ada") == "Hello Ada"
        assert plain.render(name="Ada", greeting="Hi") == "Hi Ada"  # values win over globals
        own = environment.from_string("{{ greeting }} {{ name }}", globals={"name": "Grace"})
        assert own.render() == "Hello Grace"  # a template's own globals over the app's
        assert "name" not in environment.globals  # and only its own
        assert plain.render() == "Hello "
    finally:
        del environment.globals["greeting"]
    assert plain.render(name="Ada") == " Ada"
