"""Use cases shared by the CLI and the GUI; long ones are generators of progress events."""
