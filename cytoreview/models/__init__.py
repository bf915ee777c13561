"""Model architectures and their registries (pure torch, no files)."""
