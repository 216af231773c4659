#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus: a few valid inputs per target.

Run from anywhere; it rewrites corpus/<target>/seed-*. Addresses match the
bases the targets place their input at (multiboot2: 1 MiB, pvh: 4 KiB).
"""
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent


def multiboot2(tags):
    """Header, the tags 8-byte aligned, the end tag; total_size filled in."""
    body = b""
    for kind, payload in tags + [(0, b"")]:
        tag = struct.pack("<II", kind, 8 + len(payload)) + payload
        body += tag + b"\0" * (-len(tag) % 8)
    return struct.pack("<II", 8 + len(body), 0) + body


def mb2_memory_map(entries, entry_size=24):
    data = struct.pack("<II", entry_size, 0)
    for base, length, kind in entries:
        data += struct.pack("<QQII", base, length, kind, 0).ljust(entry_size, b"\0")
    return data


def mb2_module(start, end, text):
    return struct.pack("<II", start, end) + text + b"\0"


PC_MAP = [
    (0, 0x9FC00, 1),
    (0x9FC00, 0x400, 2),
    (0xF0000, 0x10000, 2),
    (0x100000, 0x7FEE0000, 1),
    (0x7FFE0000, 0x20000, 3),
    (0xFFFC0000, 0x40000, 2),
    (0x100000000, 0x80000000, 1),
]

MULTIBOOT2 = {
    "grub": multiboot2([
        (1, b"dom0_mem=1G loglevel=debug -- console=hvc0\0"),
        (2, b"GRUB 2.12\0"),
        (3, mb2_module(0x200000, 0x280123, b"/boot/dom0.elf verbose")),
        (3, mb2_module(0x300000, 0x300000, b"")),
        (4, struct.pack("<II", 639, 1047552)),
        (6, mb2_memory_map(PC_MAP)),
        (14, b"RSD PTR \x55BOCHS \x00\x00\x00\xfe\x7f"),
        (15, b"RSD PTR \x55BOCHS \x02\x00\x00\xfe\x7f\x24\x00\x00\x00" + b"\0" * 16),
        (21, struct.pack("<I", 0x200000)),
    ]),
    "minimal": multiboot2([(6, mb2_memory_map([(0x1000, 0x1000, 1)]))]),
    "overlapping-map": multiboot2([
        (1, b"\xffbad utf8\0"),
        (6, mb2_memory_map([(0x100000, 0x100000, 1), (0, 0x200000, 1), (0x180000, 0x1000, 4)], 32)),
        (14, b"\0" * 20),
    ]),
}


def pvh(start_info_fields, blobs, size=0x700):
    """A memory image at 0x1000: start info at 0, `blobs` {offset: bytes}."""
    image = bytearray(size)
    image[0:56] = struct.pack("<IIIIQQQQII", *start_info_fields)
    for offset, blob in blobs.items():
        image[offset:offset + len(blob)] = blob
    return bytes(image)


def pvh_memmap(entries):
    return b"".join(struct.pack("<QQII", base, length, kind, 0) for base, length, kind in entries)


BASE = 0x1000
MAGIC = 0x336EC578
QEMU_MAP = PC_MAP[:4] + [(0xFEFFC000, 0x4000, 2), (0x100000000, 0x40000000, 1)]

PVH = {
    # QEMU's option ROM: -initrd as module 0 with no command line.
    "qemu": pvh(
        (MAGIC, 1, 0, 1, BASE + 0x100, BASE + 0x400, 0xF5A40, BASE + 0x200, len(QEMU_MAP), 0),
        {
            0x100: struct.pack("<QQQQ", 0x7FF00000, 0x123456, 0, 0),
            0x200: pvh_memmap(QEMU_MAP),
            0x400: b"loglevel=trace -- console=ttyS0\0",
        },
    ),
    "no-modules": pvh(
        (MAGIC, 1, 0, 0, 0, 0, 0, BASE + 0x200, 1, 0),
        {0x200: pvh_memmap([(0, 0x8000000, 1)])},
    ),
    "two-modules": pvh(
        (MAGIC, 1, 3, 2, BASE + 0x100, BASE + 0x400, 0, BASE + 0x200, 3, 0),
        {
            0x100: struct.pack("<QQQQ", 0x200000, 0x1000, BASE + 0x500, 0)
            + struct.pack("<QQQQ", 0x300000, 0, BASE + 0x600, 0),
            0x200: pvh_memmap([(0, 0x200000, 1), (0x100000, 0x100000, 1), (0x180000, 0x1000, 4)]),
            0x400: b"dom0_crash=reboot\0",
            0x500: b"dom0 verbose\0",
            0x600: b"\xff\0",
        },
    ),
}

CMDLINE = {
    "options": b"dom0_mem=512M loglevel=debug dom0_crash=reboot",
    "dom0-args": b"loglevel=warn -- console=hvc0  root=/dev/xvda -- quiet",
    "warnings": b"quiet dom0_mem=0 dom0_mem=99999999999G loglevel=loud dom0_crash=explode =x",
    "bytes": b"dom0_mem=1g\xff\xfe -- \xc3\0after nul",
}

for target, seeds in [("multiboot2", MULTIBOOT2), ("pvh", PVH), ("hypervisor_cmdline", CMDLINE)]:
    folder = HERE / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (folder / f"seed-{name}").write_bytes(data)


def records(entries):
    """`[operation][argument][length][bytes]` records (bridge, netback)."""
    out = b""
    for operation, argument, payload in entries:
        out += bytes([operation, argument, len(payload)]) + payload
    return out


def noise(seed, length):
    """Deterministic pseudo-random bytes (xorshift), for targets whose every
    input is a valid program of operations."""
    state = seed or 1
    out = bytearray()
    for _ in range(length):
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        out.append(state & 0xFF)
    return bytes(out)


BROADCAST_ARP = bytes.fromhex("ffffffffffff00163e000001" "0806") + bytes(28)
UNICAST = bytes.fromhex("00163e000002" "00163e000001" "0800") + bytes(46)

OPERATION_STREAMS = {
    # Any bytes are a sequence of operations for these targets; a few
    # deterministic streams of different lengths give the fuzzer a start.
    target: {f"noise-{length}": noise(index * 1000 + length, length) for length in (64, 512, 4096)}
    for index, target in enumerate(["blkback", "xen_ring", "dom0_rings", "netback", "storage", "mgmt_api"])
}
OPERATION_STREAMS["bridge"] = {
    "learn-and-forward": records(
        [(6, 1, bytes.fromhex("00163e000001")), (6, 2, bytes.fromhex("00163e000002")),
         (0, 0, BROADCAST_ARP), (1, 1, UNICAST), (7, 250, b""), (5, 1, b"")]
    ),
    "noise": noise(77, 512),
}

for target, seeds in OPERATION_STREAMS.items():
    folder = HERE / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (folder / f"seed-{name}").write_bytes(data)

# qcow2: the images disk-formats keeps, made by qemu-img.
qcow2_folder = HERE / "corpus" / "qcow2"
qcow2_folder.mkdir(parents=True, exist_ok=True)
for image in sorted((HERE.parent / "disk-formats" / "fuzz-seeds" / "qcow2").glob("*")):
    (qcow2_folder / f"seed-{image.name}").write_bytes(image.read_bytes())

# vmdk: the images disk-formats keeps, made by qemu-img.
vmdk_folder = HERE / "corpus" / "vmdk"
vmdk_folder.mkdir(parents=True, exist_ok=True)
for image in sorted((HERE.parent / "disk-formats" / "fuzz-seeds" / "vmdk").glob("*")):
    (vmdk_folder / f"seed-{image.name}").write_bytes(image.read_bytes())


def api_records(entries):
    """`[operation][length][bytes]` records (mgmt_api)."""
    out = b""
    for operation, payload in entries:
        out += bytes([operation, len(payload)]) + payload
    return out


API_LIST = b"GET /v1/domains HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token\r\n\r\n"
API_CREATE = (
    b"POST /v1/domains HTTP/1.1\r\nAuthorization: Bearer token\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 32\r\n\r\nname = \"web\"\nkernel = \"vmlinuz\"\n"
)
API_SEEDS = {
    "list": api_records([(2, b""), (0, API_LIST)]),
    "create-then-poll": api_records([(2, b""), (0, API_CREATE), (1, b"\x05"), (0, API_LIST)]),
    "two-connections": api_records([(2, b""), (2, b""), (4, API_LIST), (0, b"GET / HTTP/9\r\n\r\n"), (7, b"")]),
    # Another protocol on one connection (answered at once), HTTP on the other.
    "tls-then-http": api_records(
        [(2, b""), (2, b""), (0, bytes.fromhex("160301020001000001fc0303")), (4, API_LIST)]
    ),
}
folder = HERE / "corpus" / "mgmt_api"
folder.mkdir(parents=True, exist_ok=True)
for name, data in API_SEEDS.items():
    (folder / f"seed-{name}").write_bytes(data)


def checksum(data):
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF).to_bytes(2, "big")


# dom0_network: Dom0 at 10.0.0.1 (56:54:00:12:34:56), the client 10.0.0.2.
DOM0_MAC = bytes.fromhex("565400123456")
HOST_MAC = bytes.fromhex("00163e000003")
ARP_WHO_HAS_DOM0 = (
    b"\xff" * 6 + HOST_MAC + b"\x08\x06" + bytes.fromhex("0001080006040001") + HOST_MAC
    + bytes([10, 0, 0, 3]) + bytes(6) + bytes([10, 0, 0, 1])
)
ICMP = b"\x08\x00\x00\x00\x12\x34\x00\x01" + b"ping"
ICMP = ICMP[:2] + checksum(ICMP) + ICMP[4:]
IP = bytes.fromhex("4500") + (20 + len(ICMP)).to_bytes(2, "big") + bytes.fromhex("00004000400100000a0000030a000001")
IP = IP[:10] + checksum(IP) + IP[12:]
PING_DOM0 = DOM0_MAC + HOST_MAC + b"\x08\x00" + IP + ICMP
NETWORK_GET = (
    b"GET /v1/host HTTP/1.1\r\nAuthorization: Bearer fuzz-token-0123456789abcdef0123456789\r\n\r\n"
)
NETWORK_SEEDS = {
    "arp-and-ping": records([(0, 5, ARP_WHO_HAS_DOM0), (0, 5, PING_DOM0)]),
    "client-get": records([(4, 0, b""), (5, 0, NETWORK_GET), (7, 1, b""), (5, 0, b""), (6, 0, b"")]),
    "clients-and-garbage": records(
        [(4, 0, b""), (4, 0, b""), (5, 1, b"\x16\x03\x01garbage\r\n\r\n"), (0, 3, noise(5, 60)),
         (5, 0, NETWORK_GET * 2), (6, 1, b""), (7, 200, b"")]
    ),
}
folder = HERE / "corpus" / "dom0_network"
folder.mkdir(parents=True, exist_ok=True)
for name, data in NETWORK_SEEDS.items():
    (folder / f"seed-{name}").write_bytes(data)


def port_access(port, size, write, value=0):
    """One `hvm_platform` access: port, size index (1, 2, 4 bytes), write flag, value."""
    return struct.pack("<HBBI", port, {1: 0, 2: 1, 4: 2}[size], int(write), value)


PLATFORM_SEEDS = {
    # Linux's check_platform_magic, then unplugging disks and NICs.
    "unplug": port_access(0x10, 2, False) + port_access(0x12, 1, False)
    + port_access(0x12, 2, True, 0xFFFF) + port_access(0x10, 4, True, 0x60100)
    + port_access(0x10, 2, False) + port_access(0x10, 2, True, 3),
    # pci_check_type1, then sizing the platform device's memory BAR.
    "bar-sizing": port_access(0xCF8, 4, True, 0x80000000) + port_access(0xCF8, 4, False)
    + port_access(0xCF8, 4, True, 0x80001014) + port_access(0xCFC, 4, True, 0xFFFFFFFF)
    + port_access(0xCFC, 4, False) + port_access(0xCFC, 4, True, 0xF0000000)
    + port_access(0xCF8, 4, True, 0x8000100A) + port_access(0xCFE, 2, False),
    # A bootloader's A20 enable through the keyboard controller, then
    # Linux's reboot=kbd: poll for input buffer empty, pulse reset.
    "keyboard-reset": port_access(0x64, 1, False) + port_access(0x64, 1, True, 0xD1)
    + port_access(0x60, 1, True, 0xDF) + port_access(0x64, 1, True, 0xAA)
    + port_access(0x64, 1, False) + port_access(0x60, 1, False)
    + port_access(0x64, 1, False) + port_access(0x64, 1, True, 0xFE),
}
folder = HERE / "corpus" / "hvm_platform"
folder.mkdir(parents=True, exist_ok=True)
for name, data in PLATFORM_SEEDS.items():
    (folder / f"seed-{name}").write_bytes(data)
