"""Jinja + MJML compiled once per issue variant; text part; per-recipient tokens; lint."""
