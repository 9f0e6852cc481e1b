"""Mail: emails rendered in the recipient's language, the outbox they wait in, their MIME bytes,
and the sender. Imports core and i18n."""
