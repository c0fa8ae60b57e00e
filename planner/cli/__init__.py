"""The thin Typer command line over the Python API. Nothing imports it."""
