from appyard.cli.main import main

main()
