"""vplan's version: one place, read by the package root, the CLI and pyproject.toml."""

__version__ = "0.2.0"
