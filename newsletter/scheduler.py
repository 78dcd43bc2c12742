"""APScheduler jobs and the single-runner lock."""


def register(groups) -> None:
    """Add ``schedule`` and ``scheduler`` to the CLI."""


def start_in_process(app) -> None:
    """Start the scheduler in the background of ``newsletter serve``."""
