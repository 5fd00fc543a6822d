"""`python -m autoft.cli`: the same as the `autoft` command."""
from autoft.cli.app import main

main()
