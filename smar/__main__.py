from smar.cli import main

main()
