"""Images: their inputs, the registry base and its pin, kiln's deterministic OCI builder
(``oci``), the layers of kiln's OS base built from ``kiln._debian``'s lock
(``os_layers``), and the Docker Engine client that runs containers (``kiln run``, the
smoke check of a pushed image)."""
