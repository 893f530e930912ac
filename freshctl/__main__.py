"""`python -m freshctl`."""

from freshctl.cli import main

main()
