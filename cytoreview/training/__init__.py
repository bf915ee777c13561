"""Training loops as generators of progress events (pure compute, no files)."""
