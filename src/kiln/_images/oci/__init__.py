"""kiln's own OCI image builder: same inputs, same digest, known before any push.

``base`` reads the base image (local Docker Engine) and probes its install scheme;
``install`` lays wheels out as the image's filesystem with pypa ``installer``;
``layers`` writes deterministic tars, ``compress`` the pinned gzip blobs; ``cache``
keeps layers by the hash of their inputs; ``assemble`` puts layers together and
``image`` writes config and manifest bytes; ``push`` sends them through the registry
API and checks the registry's digest equals the predicted one.
"""
