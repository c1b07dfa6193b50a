"""Subcommands of the `leangraph` CLI, one module each."""
