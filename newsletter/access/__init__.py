"""Who may use the JSON API and what they did: scoped tokens, idempotency records, the audit log."""
