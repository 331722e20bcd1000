from regcli.cli import main

main()
