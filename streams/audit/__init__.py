"""The transparency log over the event log (RFC 6962 Merkle tree, tiles, signed heads).

Writer side: ``hashing`` (the shared definitions), ``compact`` (the tree state),
``tiles`` (tile addressing and proof generation), ``store`` (Postgres),
``checkpoint`` (C2SP signed notes), ``processor`` (the audit worker).
Verifier side: ``verifier`` shares nothing with the writer but ``hashing``.
"""
