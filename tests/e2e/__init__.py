"""Interoperability tests against real S/MIME clients (openssl, gpgsm, NSS, s-nail)."""
