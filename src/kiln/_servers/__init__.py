"""The servers kiln talks to: the package index, the registry, the local stack."""
