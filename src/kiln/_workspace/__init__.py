"""The repository as data: the model, discovery, and `kiln new` scaffolding."""
