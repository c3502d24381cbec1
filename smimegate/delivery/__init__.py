"""smimegate.delivery."""
