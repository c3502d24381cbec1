"""smimegate.milter."""
