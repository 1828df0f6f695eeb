"""The `controlsprint` command line: one module per subcommand, wired up in `main.py`."""
