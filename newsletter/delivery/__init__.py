"""Outbox, dispatcher, MIME building, headers, DKIM and the transports."""
