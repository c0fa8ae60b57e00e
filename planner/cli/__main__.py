"""`python -m planner.cli`: the vplan command."""

from planner.cli.main import main

main()
