"""The reader's path: subscribe, confirm, preferences, unsubscribe, the archive."""
