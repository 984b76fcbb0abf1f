"""One module per ``streamssl`` subcommand: argument wiring only, logic lives in the library."""
