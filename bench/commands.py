"""Benchmark: sealing and opening a signed command, against bare ECDSA P-256, same run.

A command costs one ECDSA signature at the head-end and one verification at the meter plus
AES-GCM and the envelope; the baseline is the signature (sign) and the verification (open)
of the same bytes alone, so the ratio shows what the envelope adds. Commands are rare (a
utility sends thousands a day, not per second); this exists so a regression is visible.

Run: ``.venv/bin/python bench/commands.py [--seconds S]``. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable

from meterguard.cosem.command import open_command, seal_command
from meterguard.crypto.ecc import SigningKey
from meterguard.crypto.keys import SecretKey
from meterguard.headend.services.commands import plain_request

HEADEND, METER = b"MGH\x00\x00\x00\x00\x01", b"MGD\x00\x00\x00\x00\x01"


def rate(fn: Callable[[int], object], seconds: float) -> float:
    """Calls per second of ``fn(i)`` over about ``seconds``."""
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            n += 1
            fn(n)
    return n / elapsed


def main() -> None:
    """Print each path's rate, its baseline and the ratio."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    key, ek, ak = SigningKey.generate(), SecretKey.generate(16), SecretKey.generate(16)
    vk = key.verifying_key()
    plain = plain_request("disconnect", None)
    at = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)

    def seal(i: int) -> bytes:
        return seal_command(
            plain, counter=i, command_key=key, headend_title=HEADEND, meter_title=METER,
            unicast_key=ek, authentication_key=ak, signed_at=at,
        )  # fmt: skip

    sample = seal(1)
    envelope_len = len(sample)
    sig = key.sign(sample)

    def opened(_i: int) -> object:
        return open_command(
            sample, command_key=vk, headend_title=HEADEND, meter_title=METER,
            unicast_key=ek, authentication_key=ak, last_counter=0,
        )  # fmt: skip

    s_ours, s_base = rate(seal, args.seconds), rate(lambda _i: key.sign(sample), args.seconds)
    o_ours = rate(opened, args.seconds)
    o_base = rate(lambda _i: vk.verify(sig, sample), args.seconds)
    print(f"envelope {envelope_len} bytes (plain request {len(plain)} bytes)")
    print(
        f"seal  {s_ours:9.0f}/s   bare ECDSA sign   {s_base:9.0f}/s   ratio {s_ours / s_base:.2f}"
    )
    print(
        f"open  {o_ours:9.0f}/s   bare ECDSA verify {o_base:9.0f}/s   ratio {o_ours / o_base:.2f}"
    )


if __name__ == "__main__":
    main()
