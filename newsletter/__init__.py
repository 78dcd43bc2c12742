"""GET THE SIGNAL — AI agent intel, delivered weekly."""

BRAND = "GET THE SIGNAL"
TAGLINE = "AI agent intel, delivered weekly"
DISTRIBUTION = "get-the-signal"  # the name pip knows the package by
