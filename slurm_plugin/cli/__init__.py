"""The `jobcarbon` command: one module per group of commands, `main` parses and dispatches."""
