"""Demo data for ``newsletter demo``."""


def seed_demo(settings) -> list[str]:
    """Create sample topics, articles and an editor account; return lines to print."""
    return []
