"""Subcommands of the ``traindash`` CLI; each module has ``add_arguments`` and ``run``."""
