"""`python -m trustfolio` is the `trustfolio` command."""

from trustfolio.cli import main

main()
