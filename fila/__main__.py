from fila.cli import main

main()
