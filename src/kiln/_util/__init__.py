"""Small shared utilities: the one way to shell out, to send HTTP and to reach the Docker
Engine; files, TOML, git."""
