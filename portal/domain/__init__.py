"""The domain: plain functions that take a database session and return objects or raise named
errors. No request, no HTML. Imports core, i18n and mail."""
