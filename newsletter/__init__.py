"""GET THE SIGNAL — AI agent intel, delivered weekly."""

BRAND = "GET THE SIGNAL"
TAGLINE = "AI agent intel, delivered weekly"
