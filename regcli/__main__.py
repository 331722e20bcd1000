"""`python -m regcli`: the command line."""

from regcli.cli import main

main()
