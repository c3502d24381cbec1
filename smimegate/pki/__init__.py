"""smimegate.pki."""
