"""smimegate.policy."""
