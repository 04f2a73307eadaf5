"""Images: their inputs, the base image and its pin, kiln's deterministic OCI builder
(``oci``), the layers of kiln's OS base built from ``kiln._debian``'s lock
(``os_layers``), and the Docker Engine client that builds an image's optional OS base."""
