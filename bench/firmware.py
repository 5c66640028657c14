"""Benchmark: a meter's firmware update check and download, against fetching the same bytes.

One run starts a PKI, a TUF repository with a 64 KiB and a 1 MiB image, and the firmware
endpoint over mutual TLS. For each image it times, per update:

* **verified**: a fresh meter's :class:`FirmwareAgent.download` — ngclient refresh (root,
  timestamp, snapshot, targets: four signature checks), the compatibility and security-version
  checks, the download with length and hash checks, the manifest parse and the write into the
  inactive slot;
* **baseline**: the same five files fetched over the same mutual-TLS endpoint with the same
  HTTP client and written to disk, nothing verified.

and prints both medians and the ratio (the cost of verification, on this machine, loopback).

Run: ``.venv/bin/python bench/firmware.py [--runs N]``. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from tuf.api.exceptions import DownloadHTTPError

from meterguard.broker.process import free_port
from meterguard.crypto.pki.store import Pki, pem
from meterguard.firmware.image import build_image
from meterguard.firmware.repository import FirmwareRepository
from meterguard.headend.api.firmware import create_firmware_app
from meterguard.meter.firmware import FirmwareAgent, Hardware, HttpsFetcher
from meterguard.system.web import serve_https


def main() -> None:
    """Run and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mg-fw-bench-"))
    now = dt.datetime.now(dt.UTC)
    pki = Pki.init(base / "pki", now=now)
    cert, key = pki.issue_server("firmware", hosts=["127.0.0.1"], now=now, out=base)
    trust = base / "trust.pem"
    trust.write_bytes(pem(pki.device_root) + pem(pki.device.certificate))
    mcert, mkey = pki.enrol_meter("0000000001", base / "m", now=now)
    root = pki.directory / "root" / "root.pem"
    repo = FirmwareRepository.create(base / "repo", now=now)
    entries = [
        repo.add_image(
            build_image(
                vendor="MGD",
                model="MG-1",
                hw_revision="A",
                version=v,
                security_version=2,
                payload_size=size,
            ),
            now=now,
        )
        for v, size in (("2.0.0", 64 * 1024), ("3.0.0", 1024 * 1024))
    ]
    port = free_port()
    server, thread = serve_https(
        create_firmware_app(repo.path), "127.0.0.1", port, cert, key, client_ca=trust
    )
    url = f"https://127.0.0.1:{port}/firmware/"
    print(f"firmware update on the meter, {args.runs} runs each, loopback mutual TLS")
    try:
        for entry in entries:
            verified, raw = [], []
            for n in range(args.runs):
                fetcher = HttpsFetcher(root, mcert, mkey)
                agent = FirmwareAgent(
                    base / f"meter-{entry.name}-{n}", meter="MGD0000000001", hardware=Hardware(),
                    bootstrap=repo.root_bytes(), fetcher=fetcher, base_url=url,
                    log=lambda _c: None, alarm=lambda _b: None,
                )  # fmt: skip
                t = time.perf_counter()
                agent.download(entry.name)
                verified.append(time.perf_counter() - t)
                plain = HttpsFetcher(root, mcert, mkey)
                out = base / f"raw-{entry.length}-{n}"
                out.mkdir()
                files = [
                    "metadata/2.root.json", "metadata/timestamp.json",
                    f"metadata/{repo.roles()[2].version}.snapshot.json",
                    f"metadata/{repo.roles()[1].version}.targets.json",
                    f"targets/{entry.sha256}.{entry.name}",
                ]  # fmt: skip
                t = time.perf_counter()
                for i, f in enumerate(files):
                    try:
                        data = b"".join(plain.fetch(url + f))
                    except DownloadHTTPError:  # no root v2: ngclient asks for it too
                        data = b""
                    (out / f"{i}").write_bytes(data)
                raw.append(time.perf_counter() - t)
            v, b = statistics.median(verified), statistics.median(raw)
            print(
                f"{entry.length:>8} B image: verified {v * 1000:7.1f} ms   "
                f"baseline fetch {b * 1000:7.1f} ms   ratio {v / b:5.2f}x"
            )
    finally:
        server.should_exit = True
        thread.join(10)


if __name__ == "__main__":
    main()
