"""The S/MIME engine: bytes in, bytes out.

This package imports nothing from smimegate.milter, smimegate.store or smimegate.policy, so that
it can be tested (and fuzzed) on its own, like libopendkim under opendkim.
"""
