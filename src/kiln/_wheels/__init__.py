"""Helper wheels (reproducible builds) and image wheelhouses."""
