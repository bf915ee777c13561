"""The only layer that touches the file system and the database."""
