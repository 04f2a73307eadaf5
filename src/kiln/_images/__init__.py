"""Images: their inputs and fingerprint, the base image, the Docker Engine builder in use
today, and kiln's own deterministic OCI builder (``oci``, proven end to end, not yet
wired into the release)."""
