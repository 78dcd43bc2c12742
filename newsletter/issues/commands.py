"""CLI commands of this capability; ``register`` adds them to the groups."""


def register(groups) -> None:
    """Add this capability's commands to the ``newsletter`` groups."""
