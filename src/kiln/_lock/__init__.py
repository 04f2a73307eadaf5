"""Image locks: every third-party file an image installs, hash-pinned and committed.

``kiln lock`` resolves an image's third-party closure (its helpers' dependencies
and ``image.toml`` ``requirements``) with ``uv pip compile --generate-hashes`` for
the image's Python and platform against the upstream index, adds kfp itself as a
``--no-deps`` entry (the way KFP's own runtime installs it: the executor needs none
of kfp's client dependencies), pins the base image by digest, and writes
``images/<i>/requirements.lock``. A release installs exactly that file; it never
resolves anything. The header records what the lock was made from (the *inputs*
hash), so a lock that no longer matches ``image.toml``, the helpers or kfp is
refused as stale instead of silently used.

A pinned version with no wheel for the image but an sdist is built into a wheel by
``kiln._wheels.sdist`` (twice, byte-identical); the lock records that wheel under its
pin (``# kiln: built ...``), and a release rebuilds it and requires the same bytes.
Such a lock says ``format = 2``; a lock without built wheels stays ``format = 1``,
which every kiln reads. An image with several ``platforms`` is resolved for each, the
same pins for all (``platforms``); its lock lists them and says ``format = 3``.

Modules: ``format`` (the file: parse and render), ``inputs`` (what a lock is made
from; staleness), ``sources`` (which upstream file a pin installs from), ``tags``
(which wheels install on an image), ``make`` (uv, and a lock's bytes), ``platforms``
(several platforms' resolutions agree). The flows that make locks are in
``kiln._locking``.
"""
