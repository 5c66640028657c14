"""FW-10: A/B slots — a power cut (SIGKILL) at every step of an update keeps the meter bootable.

A child process stages and activates an image through :class:`SlotStore`, announcing each step
(every chunk written to flash, the boot record's writes, the switch, the health check, the
confirmation) and waiting; the parent kills it at that step, then boots the store as the
bootloader would after a power cut. Before the confirming write the meter must run its last
confirmed image with its counter unchanged; after it, the new one.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from meterguard.errors import FirmwareHealthError, FirmwareTamperedError, NotFoundError
from meterguard.firmware.image import build_image, parse_image
from meterguard.meter.firmware import Hardware, SlotStore, factory_image

CHILD = r"""
import sys
from pathlib import Path
from meterguard.firmware.image import build_image, parse_image
from meterguard.meter.firmware import Hardware, SlotStore, factory_image

store = SlotStore(Path(sys.argv[1]), factory_image(Hardware()))
image = parse_image(build_image(vendor="MGD", model="MG-1", hw_revision="A", version="2.0.0",
                                security_version=2))

def step(name):
    print(name, flush=True)
    sys.stdin.readline()

store.stage(image, step)
store.activate(image.sha256, lambda _i: None, step)
print("done", flush=True)
"""


def _run(directory: Path, kill_at: int | None) -> list[str]:
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", CHILD, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stdin is not None
    assert child.stdout is not None
    steps = []
    while True:
        line = child.stdout.readline().strip()
        if not line or line == "done":
            break
        steps.append(line)
        if kill_at is not None and len(steps) - 1 == kill_at:
            child.send_signal(signal.SIGKILL)
            break
        child.stdin.write("\n")
        child.stdin.flush()
    child.wait(30)
    return steps


def _others(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in directory.parent.iterdir()
        if p.is_file()
    }


def test_a_power_cut_at_any_step_keeps_the_last_confirmed_image(tmp_path: Path) -> None:
    steps = _run(tmp_path / "probe", None)
    assert steps[0] == "invalidated"
    assert steps[-3:] == ["switched", "healthy", "confirmed"]
    assert steps.count("write") >= 4  # the image goes to flash in chunks
    for k, name in enumerate(steps):
        d = tmp_path / f"cut-{k}" / "slots"
        d.parent.mkdir()
        (d.parent / "state.json").write_bytes(b'{"counters": 7, "keys": "kept"}')
        before = _others(d)
        SlotStore(d, factory_image(Hardware()))  # the meter as it left the factory
        assert _run(d, k)[-1] == name
        store = SlotStore(d, factory_image(Hardware()))
        reverted = store.boot()
        slot, image = store.running()
        confirmed = name == "confirmed"
        assert image.manifest.version == ("2.0.0" if confirmed else "1.0.0"), name
        assert store.counter == (2 if confirmed else 1), name
        assert slot == ("b" if confirmed else "a"), name
        assert reverted == (name in ("switched", "healthy")), name
        assert _others(d) == before  # nothing outside the slots was touched


def test_failing_health_check_reverts_and_keeps_the_counter(tmp_path: Path) -> None:
    store = SlotStore(tmp_path, factory_image(Hardware()))
    image = parse_image(
        build_image(
            vendor="MGD",
            model="MG-1",
            hw_revision="A",
            version="2.0.0",
            security_version=5,
            selftest="fail",
        )
    )
    store.stage(image)

    def health(img: object) -> None:
        raise FirmwareHealthError("self-test failed")

    with pytest.raises(FirmwareHealthError):
        store.activate(image.sha256, health)
    assert store.running()[1].manifest.version == "1.0.0"
    assert store.counter == 1
    assert store.record()["trial"] is None


def test_activation_names_the_staged_image_hash(tmp_path: Path) -> None:
    store = SlotStore(tmp_path, factory_image(Hardware()))
    image = parse_image(
        build_image(
            vendor="MGD", model="MG-1", hw_revision="A", version="2.0.0", security_version=2
        )
    )
    with pytest.raises(NotFoundError):
        store.activate(image.sha256, lambda _i: None)  # nothing staged
    store.stage(image)
    with pytest.raises(NotFoundError):
        store.activate(hashlib.sha256(b"another image").hexdigest(), lambda _i: None)
    assert store.running()[1].manifest.version == "1.0.0"
    assert store.activate(image.sha256, lambda _i: None).manifest.version == "2.0.0"


def test_a_slot_changed_in_flash_is_not_booted_silently(tmp_path: Path) -> None:
    store = SlotStore(tmp_path, factory_image(Hardware()))
    data = bytearray((tmp_path / "slot-a.bin").read_bytes())
    data[-1] ^= 1
    (tmp_path / "slot-a.bin").write_bytes(bytes(data))
    with pytest.raises(FirmwareTamperedError, match="does not hold the image"):
        store.running()
