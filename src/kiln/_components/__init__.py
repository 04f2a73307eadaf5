"""Component YAMLs and pipelines (KFP SDK), and running them locally."""
