"""The `edgeship` command line: one module per command group."""
