"""Images: their inputs, the base image and its pin, kiln's deterministic OCI builder
(``oci``), and the Docker Engine client that builds an image's optional OS base."""
