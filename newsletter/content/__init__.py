"""Articles and tags: ingest (API, RSS/Atom, files) and sanitising."""
