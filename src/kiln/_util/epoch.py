"""The one time kiln writes into what it builds: wheels (``SOURCE_DATE_EPOCH``), layer
tars and image configs (``MTIME``). A constant, never the commit time, so unchanged
inputs give the same bytes."""

from __future__ import annotations

# 1980-01-01T00:00:00Z, the earliest time a zip file can record.
SOURCE_DATE_EPOCH = "315532800"
MTIME = int(SOURCE_DATE_EPOCH)  # every layer tar entry's mtime, every config's created
