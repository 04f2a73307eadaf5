"""kiln: a monorepo and release engine for Kubeflow Pipelines helper code."""

from __future__ import annotations

__version__ = "0.1.0"
