"""smimegate.store."""
