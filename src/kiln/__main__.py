from kiln._cli import main

main()
