"""smimegate: an S/MIME encryption gateway that runs as a milter inside Postfix or Sendmail."""

__version__ = "0.1.0"
