"""Bounces and complaints: provider webhooks, the DSN mailbox, suppression, click counts."""
