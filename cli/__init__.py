"""The `mlrag` command: one entry point (cli.main) and a module per subcommand, outside the
core so that rag imports none of the project's other packages."""
