"""Cryptographic recipes that the rest of meterguard calls.

Callers use typed keys (:mod:`.keys`), authenticated encryption with the
12-byte DLMS tag (:mod:`.aead`), RFC 3394 key wrap (:mod:`.keywrap`) and
ECDSA/ECDH/KDF for suites 1 and 2 (:mod:`.ecc`). Raw primitives live in
:mod:`.hazmat`, which only this package imports (pyca/cryptography's
"recipes over hazmat" split).

Nothing here does IO, logs, or reads the clock.
"""
