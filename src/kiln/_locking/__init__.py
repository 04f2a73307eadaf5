"""Making locks: the flows behind ``kiln lock`` and ``kiln bump``.

``flow`` (lock, check, relock: the OS lock and the image locks), ``debian`` (the OS
lock: its closure and layer), ``bases`` (a registry base pinned by digest), ``bump``
(a version bump and the locks it makes stale), ``tools`` (the real tools a flow is
handed, built from a ``Context``). They sit above the packages they drive: the lock
files (``kiln._lock``), wheels, images and Debian packages, which import none of them.
"""
