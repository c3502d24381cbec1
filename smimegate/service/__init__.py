"""smimegate.service: what the CLI, the web admin and the REST API do to the store, written once.

Each front end parses its own input (argparse, a form, JSON), calls these functions and shows
the result its own way; none holds store logic of its own (DESIGN.md: "The web admin and REST
API run as their own process over the same service functions as the CLI").

errors.py      InvalidInput (bad name or value, names the field), OperationFailed, Forbidden
actor.py       who asks, with which role, from where: checked before every change
audit.py       one audit-log row per change and key export, in the change's own transaction
properties.py  policy property names and values as the CLI's rules check them; effective policy
settings.py domains.py users.py   the three levels of policy properties
accounts.py    admin accounts, Argon2id passwords, API tokens
sessions.py    web sessions and sign-in throttling
certificates.py roots.py crls.py cas.py queues.py sms.py   the PKI and delivery commands
               (cert, root, crl, ca, queue; the SMS transport); the CLI only parses and prints
"""
