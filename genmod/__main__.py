from genmod.cli import main

main()
