"""Languages: which one a reader gets, words that depend on the reader, templates compiled per
language, and the gettext catalogs (compiling at start-up, checks, tooling). Imports only core."""
