"""The in-process sender of ``newsletter serve``."""


def start_in_process(app) -> None:
    """Start the background sender thread (dispatches issues in `sending`)."""
