"""Small shared utilities: the one way to shell out, files, TOML, git."""
