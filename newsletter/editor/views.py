"""Editor views (thin: logic lives in services shared with the CLI and API)."""
