"""The meterguard PKI: root CA → device CA and service CA, meter enrolment, revocation.

See :mod:`.authority` for issuing and :mod:`.store` for the directory layout.
"""
