"""kiln's benchmarks: see bench/README.md."""
