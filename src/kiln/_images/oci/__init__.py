"""kiln's own OCI image builder: same inputs, same digest, known before any push.

``base_image`` reads a registry base (or takes kiln's OS base, ``kiln._images.os_layers``)
and probes its install scheme; ``rootfs`` unpacks it and ``interpreter`` runs its own
``python3`` (started as ``loader`` says); ``install`` lays wheels out as the image's
filesystem with pypa ``installer``; ``layers`` writes deterministic tars, ``compress``
the pinned gzip blobs; ``cache`` keeps layers by the hash of their inputs; ``assemble``
puts layers together and ``image`` writes config and manifest bytes; ``push`` sends
them through the registry API and checks the registry's digest equals the predicted
one; ``builder`` is all of it as a release uses it, ``smoke`` and ``sbom`` included.
"""
