"""Images: their inputs and fingerprint, and the Docker Engine builder."""
