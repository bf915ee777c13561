"""Arrays, masks and transforms: pure compute, no files."""
