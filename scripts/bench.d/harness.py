#!/usr/bin/env python3
"""Boot Xen 4.17 + Linux Dom0 and Xenolith in the same QEMU, alternating, and
print one Markdown table of figures (median [min-max] of N runs, and the ratio
Xen / Xenolith). Called by scripts/bench, which builds both sides first.

Standard library only. Each run is one boot of each side: QEMU starts, the
harness waits for Dom0's ready line on the serial console (power-on -> Dom0
ready), reads Dom0's memory figure from that line, lets the machine settle, then
samples the QEMU process's CPU time over an idle window, and stops QEMU.

On the Xenolith side each run adds a second boot (when --guest-iso is given): a
GRUB ISO whose Dom0 creates and destroys a guest --cycles times, then starts the
test guest in bench mode. The harness reads the create+destroy time and the
guest's `test-guest: bench` figures from the console and waits for the guest's
verdict. The reference has no toolstack to start that guest, so those rows stay
"not yet measurable" on the Xen side.

Two more Xenolith boots per run go through Dom0's toolstack (when --debian-iso
and --ten-iso are given). The Debian boot defines one Debian guest from xl.cfg
boot modules and starts none; the harness types `info` on the serial line
(Dom0 memory, 0 guests), then `create NAME` (the create request), reads
Dom0's created line (create -> unpause and the decompression part, in ms of
Dom0's TSC, corrected by the hypervisor clock's rate against the host's over
the boot), times the guest's first console line and its `init started` line
from Dom0's echo of the request by their arrival on the serial pipe, and
types `info` again once the guest's shell is up (Dom0 memory, 1 guest). Then
it destroys the guest and creates it again: Dom0 has the kernel cached by
then. The ten-guest boot starts ten small guests from
boot modules and reads Dom0's memory from the created line of the tenth. The
Xen column of those rows is the manual measurement recorded in
/work/shared/docs/QEMU-TCG.md, not a figure of this run.

A fifth Xenolith boot per run (when --disk-iso is given) gives a Debian guest
a scratch disk image (made here, removed afterwards) as the appliance's
virtio disk, served whole through Dom0's blkback, and runs busybox dd in the
guest's shell through `console NAME`: sequential O_DIRECT write and read
MB/s, 4 KiB O_DIRECT read IOPS from one dd and from a shell loop of one dd
per random read (with the same loop on /dev/zero for its start-up cost), and
Dom0's `list` CPU time before and after over the guest's block requests.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import os
import platform
import re
import select
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

XEN = "xen"
XENOLITH = "xenolith"
SIDE_TITLES = {XEN: "Xen 4.17 + Linux Dom0", XENOLITH: "Xenolith"}

# Console lines the harness looks for.
BANNER = {
    XENOLITH: re.compile(r"\] Xenolith hypervisor \d"),
    XEN: re.compile(r"^\(XEN\) Xen version 4\.17"),
}
# Dom0's console output reaches the serial line as written, with no "(d0) "
# prefix; "(dN) " lines are guests'.
XENOLITH_READY = re.compile(r"(?<!\) )\bdom0 ready: memory (\d+) MiB")
XENOLITH_USES = re.compile(r"dom0 ready: .*?\buses (\d+) KiB")
XEN_READY = re.compile(r"XEN-DOM0-READY\b(.*)")
XEN_FIELD = re.compile(r"(\w+)=(\S+)")
# The guest boot (Xenolith only): Dom0's create/destroy line, the test guest's
# figures and its verdict.
CYCLES_LINE = re.compile(r"(?<!\) )\bdom0: (\d+) create/destroy cycles: .*?, (\d+) us per create\+destroy")
GUEST_FIGURE = re.compile(r"\(d\d+\) test-guest: bench ([\w-]+) (\d+) (\S+)")
GUEST_FAILURE = re.compile(r"\(d\d+\) test-guest: (FAIL .*)")
GUEST_VERDICT = re.compile(r"\(d\d+\) test-guest: (\d+) passed, (\d+) failed")
# The test guest's figure name -> (figure key, unit it prints, factor to the
# table's unit).
GUEST_FIGURES = {
    "hypercall-round-trip": ("hypercall", "ns", 1e-3),
    "evtchn-send": ("evtchn_send", "ns", 1e-3),
    "grant-map-unmap": ("grant_map", "ns", 1e-3),
    "grant-copy": ("grant_copy", "MB/s", 1.0),
    "timer-immediate": ("timer_immediate", "ns", 1e-3),
    "timer-wakeup": ("timer_wakeup", "ns", 1e-3),
}
# The toolstack boots (Xenolith only): Dom0's created line, its `info`
# output, the guest's console mirrored as "[NAME] ...".
CREATED_LINE = re.compile(
    r"(?<!\) )\bdom0: created domain (\d+) \((\S+)\) in (\d+) ms "
    r"\((?:(\d+) ms decompressing the kernel|kernel from the cache)\): "
    r"(\d+) MiB, .*; Dom0 uses (\d+) KiB with (\d+) guests"
)
HYPERVISOR_STAMP = re.compile(r"^\[\s*(\d+\.\d+)\] ")
INFO_MEMORY = re.compile(r"^dom0_memory_in_use\s*:\s*(\d+) KiB")
INFO_GUESTS = re.compile(r"^guests\s*:\s*(\d+)")
SHELL_PROMPT = b"xenolith# "
TSC_LINE = re.compile(r"\] TSC runs at (\d+) MHz")
GUEST_INIT = "XENOLITH-GUEST: init started"
GUEST_SHELL = "XENOLITH-GUEST: shell"
ALL_GUESTS_DONE = re.compile(r"(?<!\) )\bdom0: all guests done \((\d+) powered off, (\d+) did not\)")
TEST_GUEST_VERDICT = re.compile(r"\(d\d+\) test-guest: (\d+) passed, (\d+) failed")
# Linux's boot-time memory line: the resident kernel image (init is freed later).
LINUX_MEMORY = re.compile(
    r"Memory: \d+K/(\d+)K available \((\d+)K kernel code, (\d+)K rwdata, "
    r"(\d+)K rodata, \d+K init, (\d+)K bss"
)


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class RunFailed(Exception):
    pass


@dataclass
class Machine:
    """The emulated machine both sides boot on."""

    memory: str
    cpus: int
    cpu: str
    dom0_mem_mib: int

    def qemu_base(self) -> list[str]:
        return [
            "qemu-system-x86_64",
            "-accel", "tcg,thread=multi",
            "-cpu", self.cpu,
            "-m", self.memory,
            "-smp", str(self.cpus),
            "-nic", "none",
            "-display", "none",
            "-serial", "stdio",
            "-monitor", "none",
            "-parallel", "none",
            "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]  # fmt: skip


@dataclass
class Side:
    name: str
    files: dict[str, Path]  # role -> file
    command: list[str]
    timeout: float
    results: dict[str, list[float]] = field(default_factory=dict)
    # The command of the guest boot (Xenolith with --guest-iso), if any.
    guest_command: list[str] | None = None
    # The toolstack boots (Xenolith with --debian-iso / --ten-iso), if any.
    debian_command: list[str] | None = None
    ten_command: list[str] | None = None
    # The disk boot (Xenolith with --disk-iso), without its -drive.
    disk_command: list[str] | None = None

    def add(self, figure: str, value: float | None) -> None:
        if value is not None:
            self.results.setdefault(figure, []).append(value)


def module_path(path: Path) -> str:
    # QEMU's multiboot loader splits -initrd on commas and a module's path
    # ends at the first space.
    text = str(path)
    if "," in text or " " in text:
        raise SystemExit(f"bench: error: {text}: a path with ',' or ' ' cannot be a multiboot module")
    return text


def xenolith_side(args: argparse.Namespace, machine: Machine) -> Side:
    image = Path(args.xenolith_dir)
    files = {"hypervisor": image / "hypervisor.elf", "dom0": image / "dom0.elf"}
    command = machine.qemu_base() + [
        "-kernel", str(files["hypervisor"]),
        "-initrd", str(files["dom0"]),
        # No Dom0 arguments: Dom0 idles after ready.
        "-append", f"dom0_mem={machine.dom0_mem_mib}M --",
    ]  # fmt: skip
    return Side(XENOLITH, files, command, args.xenolith_timeout)


def xen_side(args: argparse.Namespace, machine: Machine) -> Side:
    ref = Path(args.xen_dir)
    files = {
        "hypervisor": ref / "xen-4.17-amd64",
        "dom0": ref / "vmlinuz",
        "initrd": ref / "dom0-initrd.cpio.gz",
    }
    mem = machine.dom0_mem_mib
    command = machine.qemu_base() + [
        "-kernel", module_path(files["hypervisor"]),
        "-append", f"console=com1 com1=115200,8n1 dom0_mem={mem}M,max:{mem}M",
        "-initrd",
        f"{module_path(files['dom0'])} console=hvc0 earlyprintk=xen,{module_path(files['initrd'])}",
    ]  # fmt: skip
    return Side(XEN, files, command, args.xen_timeout)


def process_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time of each thread of a process, in seconds, by thread id.

    From /proc/PID/task/TID/schedstat (nanoseconds on the CPU), which is far
    finer than the clock ticks of /proc/PID/stat.
    """
    times = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as stat:
                times[int(task)] = int(stat.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            pass  # the thread ended meanwhile
    return times


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the process's threads used between two samples (a thread
    that ended in between is not counted; one that started counts in full)."""
    return sum(seconds - before.get(tid, 0.0) for tid, seconds in after.items())


def die_with_parent() -> None:
    """In the QEMU child before exec: get SIGKILL if the harness dies, so no
    emulator outlives it (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Console:
    """Follows one boot's serial console and notes what the figures need."""

    def __init__(self, side: str, machine: Machine):
        self.side = side
        self.machine = machine
        self.banner_at: float | None = None
        self.ready_at: float | None = None
        self.memory_kib: float | None = None  # Dom0 memory in use
        self.linux_image_kib: int | None = None

    def line(self, now: float, line: str) -> None:
        if self.banner_at is None and BANNER[self.side].search(line):
            self.banner_at = now
        if self.side == XENOLITH:
            self.xenolith_line(now, line)
        else:
            self.xen_line(now, line)

    def xenolith_line(self, now: float, line: str) -> None:
        ready = XENOLITH_READY.search(line)
        if not ready:
            return
        if int(ready.group(1)) != self.machine.dom0_mem_mib:
            raise RunFailed(f"Dom0 has {ready.group(1)} MiB, not the {self.machine.dom0_mem_mib} MiB asked for")
        uses = XENOLITH_USES.search(line)
        self.memory_kib = float(uses.group(1)) if uses else None
        self.ready_at = now

    def xen_line(self, now: float, line: str) -> None:
        memory = LINUX_MEMORY.search(line)
        if memory:
            total, code, rwdata, rodata, bss = map(int, memory.groups())
            if abs(total - self.machine.dom0_mem_mib * 1024) > 1024:
                raise RunFailed(f"Dom0 has {total} KiB, not the {self.machine.dom0_mem_mib} MiB asked for")
            self.linux_image_kib = code + rwdata + rodata + bss
            return
        ready = XEN_READY.search(line)
        if not ready:
            return
        meminfo = dict(XEN_FIELD.findall(ready.group(1)))
        try:
            allocated = int(meminfo["MemTotal"]) - int(meminfo["MemAvailable"])
        except (KeyError, ValueError):
            raise RunFailed(f"ready line without MemTotal/MemAvailable: {line!r}") from None
        if self.linux_image_kib is None:
            raise RunFailed("no 'Memory: ... kernel code' line from Linux before Dom0 ready")
        # Comparable with Xenolith's figure, which counts its image: the
        # resident kernel image plus what is allocated (not available).
        self.memory_kib = float(self.linux_image_kib + allocated)
        self.ready_at = now


def run_once(side: Side, machine: Machine, args: argparse.Namespace, log_path: Path) -> None:
    """One boot of SIDE: records ready time, memory in use and idle CPU."""
    with open(log_path, "wb") as out:
        out.write(("$ " + shlex.join(side.command) + "\n").encode())
        out.flush()
        started = time.monotonic()
        process = subprocess.Popen(
            side.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=out,
            preexec_fn=die_with_parent,
        )
        try:
            console = wait_ready(process, side, machine, started, out)
            time.sleep(args.settle)
            if process.poll() is not None:
                raise RunFailed(f"QEMU exited (status {process.returncode}) while settling")
            cpu_before = process_cpu_seconds(process.pid)
            window_start = time.monotonic()
            drain(process, out, window_start + args.idle)
            if process.poll() is not None:
                raise RunFailed(f"QEMU exited (status {process.returncode}) while idle")
            cpu_after = process_cpu_seconds(process.pid)
            window = time.monotonic() - window_start
        finally:
            stop(process)
            if process.stdout:
                process.stdout.close()
    banner = (console.banner_at - started) * 1000.0
    ready = (console.ready_at - started) * 1000.0
    idle = 100.0 * cpu_used(cpu_before, cpu_after) / window
    side.add("banner", banner)
    side.add("ready", ready)
    side.add("memory", console.memory_kib)
    side.add("idle", idle)
    memory_text = f"{console.memory_kib:,.0f} KiB" if console.memory_kib is not None else "not reported"
    log(
        f"  {SIDE_TITLES[side.name]}: banner {banner:,.0f} ms, ready {ready:,.0f} ms, "
        f"Dom0 memory in use {memory_text}, idle CPU {idle:.2f}%"
    )


def run_guest_bench(side: Side, args: argparse.Namespace, log_path: Path) -> None:
    """One guest boot of Xenolith: records the create+destroy time and the
    test guest's figures. Every figure must come, and the guest's verdict must
    have no failure, within --guest-timeout seconds."""
    command = side.guest_command
    with open(log_path, "wb") as out:
        out.write(("$ " + shlex.join(command) + "\n").encode())
        out.flush()
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=out,
            preexec_fn=die_with_parent,
        )
        figures: dict[str, float] = {}
        failures: list[str] = []
        verdict = None
        exit_status = None  # QEMU's, if it stopped before the harness stopped it
        try:
            pending = bytearray()
            for _, line in read_lines(process, out, started + args.guest_timeout, pending):
                cycles = CYCLES_LINE.search(line)
                if cycles:
                    if int(cycles.group(1)) != args.cycles:
                        raise RunFailed(f"Dom0 ran {cycles.group(1)} cycles, not the {args.cycles} asked for")
                    figures["create_destroy"] = int(cycles.group(2)) / 1000.0
                figure = GUEST_FIGURE.search(line)
                if figure and figure.group(1) in GUEST_FIGURES:
                    key, unit, factor = GUEST_FIGURES[figure.group(1)]
                    if figure.group(3) != unit:
                        raise RunFailed(f"guest figure {figure.group(1)} in {figure.group(3)}, expected {unit}")
                    figures[key] = int(figure.group(2)) * factor
                failure = GUEST_FAILURE.search(line)
                if failure:
                    failures.append(failure.group(1))
                verdict = GUEST_VERDICT.search(line) or verdict
                if verdict:
                    break
            exit_status = process.poll()
        finally:
            stop(process)
            if process.stdout:
                process.stdout.close()
    if failures:
        raise RunFailed("the bench guest failed: " + "; ".join(failures))
    if verdict is None:
        if exit_status is not None:
            raise RunFailed(f"QEMU exited with status {exit_status} before the bench guest's verdict")
        raise RunFailed(f"no verdict from the bench guest within {args.guest_timeout:.0f} s")
    if int(verdict.group(2)) != 0:
        raise RunFailed(f"the bench guest's verdict: {verdict.group(0)}")
    wanted = ["create_destroy"] + [key for key, _, _ in GUEST_FIGURES.values()]
    missing = [key for key in wanted if key not in figures]
    if missing:
        raise RunFailed("the guest boot did not report " + ", ".join(missing))
    for key, value in figures.items():
        side.add(key, value)
    log(
        f"  {SIDE_TITLES[side.name]} guest boot: create+destroy {figures['create_destroy']:,.1f} ms, "
        f"hypercall {figures['hypercall']:,.1f} µs, evtchn send {figures['evtchn_send']:,.1f} µs, "
        f"grant map+unmap {figures['grant_map']:,.1f} µs, grant copy {figures['grant_copy']:,.0f} MB/s"
    )


class Session:
    """One interactive boot: follows the serial console line by line (with
    the host time each line arrived) and types on it (QEMU's stdin)."""

    def __init__(self, process: subprocess.Popen, out, deadline: float, timeout: float, fatal: re.Pattern, observe=None):
        self.fatal = fatal  # lines that end the boot as a failure at once
        self.observe = observe  # called with (arrival time, line) for every line
        self.process = process
        self.out = out
        self.deadline = deadline
        self.timeout = timeout
        self.pending = bytearray()
        self.now = 0.0  # arrival of the line being matched
        self.lines = read_lines(process, out, deadline, self.pending, partial=True)

    def send(self, text: str) -> float:
        """Types TEXT; returns the host time it was written."""
        if self.process.poll() is not None or self.process.stdin is None:
            raise RunFailed(f"QEMU exited (status {self.process.returncode}) before typing {text!r}")
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()
        return time.monotonic()

    def wait(self, what: str, match, prompt: bool = False):
        """Reads lines until MATCH(line) is true; returns (arrival time,
        line, MATCH's value). With PROMPT, Dom0's shell prompt at the end of
        the output read so far (it has no newline) also ends the wait."""
        for now, line in self.lines:
            if line is None:  # a chunk that ended mid-line
                if prompt and self.pending.endswith(SHELL_PROMPT):
                    return now, "", None
                continue
            if self.observe:
                self.observe(now, line)
            if self.fatal.search(line):
                raise RunFailed(f"while waiting for {what}: {line!r}")
            self.now = now
            value = match(line)
            if value:
                return now, line, value
        if self.process.poll() is not None:
            raise RunFailed(f"QEMU exited with status {self.process.returncode} before {what}")
        raise RunFailed(f"no {what} within {self.timeout:.0f} s of QEMU's start")

    def info(self, guests: int) -> float:
        """Types `info` into Dom0's shell; returns Dom0's memory in use
        (KiB), checking that it counts GUESTS guests."""
        self.send("info\r")
        _, _, count = self.wait("`info`'s guests line", lambda line: INFO_GUESTS.search(line))
        if int(count.group(1)) != guests:
            raise RunFailed(f"`info` says {count.group(1)} guests, expected {guests}")
        _, _, memory = self.wait("`info`'s dom0_memory_in_use line", lambda line: INFO_MEMORY.search(line))
        return float(memory.group(1))


def start_session(command: list[str], log_path: Path, timeout: float, fatal: re.Pattern, observe=None):
    out = open(log_path, "wb")
    out.write(("$ " + shlex.join(command) + "\n").encode())
    out.flush()
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=out,
        preexec_fn=die_with_parent,
    )
    return out, process, Session(process, out, started + timeout, timeout, fatal, observe)


def end_session(out, process: subprocess.Popen) -> None:
    try:
        stop(process)
    finally:
        for stream in (process.stdin, process.stdout):
            if stream:
                try:
                    stream.close()
                except OSError:
                    pass  # QEMU is gone: a pending write has nowhere to go
        out.close()


def created(line: str):
    return CREATED_LINE.search(line)


def run_debian_boot(side: Side, args: argparse.Namespace, log_path: Path) -> None:
    """The Debian boot: Dom0's shell is asked for `info`, then to create the
    Debian guest, then for `info` again once the guest's shell is up; then
    to destroy it and create it again (Dom0 has the kernel cached then)."""
    assert side.debian_command is not None
    name = args.debian_name
    prefix = f"[{name}] "
    # The guest stopping, or Dom0's shell refusing a command, ends the boot.
    fatal = re.compile(
        rf"(?<!\) )\bdom0: domain \d+ \({re.escape(name)}\) shut down|^(create|destroy) {re.escape(name)}: |"
        r"(?<!\) )\bdom0: .*\b(failed|error)\b"
    )
    # The hypervisor's own lines, stamped with its clock (the TSC at the
    # rate it calibrated at boot), with their arrival on the host clock.
    stamps: list[tuple[float, float]] = []

    def stamped(now: float, line: str) -> None:
        stamp = HYPERVISOR_STAMP.match(line)
        if stamp:
            stamps.append((float(stamp.group(1)), now))

    out, process, session = start_session(side.debian_command, log_path, args.debian_timeout, fatal, stamped)
    try:
        _, _, tsc = session.wait("hypervisor's TSC line", lambda line: TSC_LINE.search(line))
        session.wait("Dom0 ready line", lambda line: XENOLITH_READY.search(line))
        # Dom0 defines the guest and starts none (the appliance config's
        # guests list is empty); its shell shows a prompt when it listens.
        session.wait("Dom0 shell prompt", lambda line: False, prompt=True)
        memory_0 = session.info(0)
        cold = create(session, name, args.debian_mib, cached=False)
        session.wait(f"{prefix}{GUEST_SHELL}", lambda line: line.startswith(prefix + GUEST_SHELL))
        memory_1 = session.info(1)
        session.send(f"destroy {name}\r")
        session.wait(f"destroyed line for {name}", lambda line: f"dom0: destroyed domain {cold['domain']} ({name})" in line)
        warm = create(session, name, args.debian_mib, cached=True)
    finally:
        end_session(out, process)
    # The hypervisor's clock against the host's, over the boot so far.
    if len(stamps) < 2 or stamps[-1][0] - stamps[0][0] < 1.0:
        raise RunFailed("too few hypervisor-stamped lines to check its clock against the host's")
    (first_stamp, first_host), (last_stamp, last_host) = stamps[0], stamps[-1]
    clock = (last_stamp - first_stamp) / (last_host - first_host)
    figures = {
        "create_first_instruction": cold["create_ms"] / clock,
        "create_decompress": cold["decompress_ms"] / clock,
        "create_clock": clock,
        "create_echo": cold["echo_ms"],
        "create_console": cold["console_s"],
        "create_userspace": cold["userspace_s"],
        "create_cached_first_instruction": warm["create_ms"] / clock,
        "create_cached_userspace": warm["userspace_s"],
        "memory_guests_0": memory_0,
        "memory_guests_1_created": cold["memory"],
        "memory_guests_1": memory_1,
    }
    for key, value in figures.items():
        side.add(key, value)
    log(
        f"  {SIDE_TITLES[side.name]} Debian boot: create → first instruction {figures['create_first_instruction']:,.0f} ms "
        f"({figures['create_decompress']:,.0f} ms decompressing; Dom0's TSC-timed {cold['create_ms']:,.0f} ms, "
        f"hypervisor clock ÷ host clock {clock:.3f} with the TSC calibrated at {tsc.group(1)} MHz; "
        f"typing → echo {cold['echo_ms']:,.0f} ms), → first console line {cold['console_s']:.2f} s, "
        f"→ userspace {cold['userspace_s']:.2f} s; again with the kernel cached: "
        f"{figures['create_cached_first_instruction']:,.0f} ms, → userspace {warm['userspace_s']:.2f} s; "
        f"Dom0 {memory_0:,.0f} KiB with 0 guests, {cold['memory']:,.0f} KiB at creation, "
        f"{memory_1:,.0f} KiB with the guest running"
    )
    if abs(clock - 1.0) > 0.05:
        log(
            f"  warning: the hypervisor's clock ran at {clock:.2f}× the host's in this boot (TSC calibrated at "
            f"{tsc.group(1)} MHz under this host load): the create figures are corrected for it, but this "
            "boot's other self-timed figures are off by as much"
        )


def create(session: Session, name: str, mib: int, cached: bool) -> dict:
    """Types `create NAME` and follows the guest to userspace: Dom0's
    create -> unpause and decompression figures (its TSC-timed ms), the
    typing latency, and request -> first console line and -> userspace on
    the host clock."""
    prefix = f"[{name}] "
    typed_at = session.send(f"create {name}\r")
    # Dom0's line editor echoes the newline as it takes the line, just
    # before it runs the command: the request as Dom0 receives it.
    request_at, _, _ = session.wait(
        f"Dom0's echo of `create {name}`", lambda line: line.rstrip().endswith(f"create {name}")
    )
    # The guest's first lines may come before Dom0's created line, which
    # Dom0 prints after unpausing it (and after caching the kernel).
    first_at = None

    def created_or_first(line: str):
        nonlocal first_at
        if first_at is None and line.startswith(prefix):
            first_at = session.now
        return created(line)

    _, line, found = session.wait(f"created line for {name}", created_or_first)
    if found.group(2) != name or int(found.group(5)) != mib or int(found.group(7)) != 1:
        raise RunFailed(f"unexpected created line: {line!r}")
    if cached != (found.group(4) is None):
        state = "from the cache" if cached else "decompressed"
        raise RunFailed(f"expected the kernel {state}: {line!r}")
    if first_at is None:
        first_at, _, _ = session.wait(f"first {prefix}console line", lambda line: line.startswith(prefix))
    init_at, _, _ = session.wait(f"{prefix}{GUEST_INIT}", lambda line: line.startswith(prefix + GUEST_INIT))
    return {
        "domain": int(found.group(1)),
        "create_ms": float(found.group(3)),
        "decompress_ms": float(found.group(4) or 0),
        "memory": float(found.group(6)),
        "echo_ms": (request_at - typed_at) * 1000.0,
        "console_s": first_at - request_at,
        "userspace_s": init_at - request_at,
    }


# The disk boot (Xenolith only): the guest's shell commands. Each ends by
# echoing a label spelled in two quoted halves, so that the shell's echo of
# the typed line does not match; the guest times itself with /proc/uptime
# (centiseconds of its Xen clock).
DISK_DEV = "/dev/xvda"
UPTIME = "$(cut -d' ' -f1 /proc/uptime)"


def disk_commands(args: argparse.Namespace) -> list[tuple[str, str]]:
    seq, small, loop = args.disk_seq_mib, args.disk_small_reads, args.disk_random_reads
    blocks = args.disk_mib * 256  # 4 KiB blocks on the disk
    timed = "u0={u}; {body}; r=$?; u1={u}; echo \"{a}\"\"{b}=$r $u0 $u1{extra}\""

    def step(label: str, body: str, extra: str = "") -> tuple[str, str]:
        return label, timed.format(u=UPTIME, body=body, a=label[:3], b=label[3:], extra=extra)

    # The random offsets: $RANDOM is 15 bits, two of them cover the disk.
    offset = f"$(( ((RANDOM << 15) | RANDOM) % {blocks} ))"
    return [
        ("STATS0", f"s0=\"$(cat /sys/block/xvda/stat)\"; echo \"STA\"\"TS0=$s0\""),
        step("SEQWRITE", f"dd if=/dev/zero of={DISK_DEV} bs=1M count={seq} oflag=direct conv=fsync 2>/dev/null"),
        step("SEQREAD", f"dd if={DISK_DEV} of=/dev/null bs=1M count={seq} iflag=direct 2>/dev/null"),
        step("SMALLREAD", f"dd if={DISK_DEV} of=/dev/null bs=4k count={small} iflag=direct 2>/dev/null"),
        step(
            "RANDREAD",
            f"i=0; while [ $i -lt {loop} ]; do dd if={DISK_DEV} of=/dev/null bs=4k count=1 "
            f"skip={offset} iflag=direct 2>/dev/null || break; i=$((i+1)); done; [ $i -eq {loop} ]",
        ),
        step(
            "LOOPONLY",
            f"i=0; while [ $i -lt {loop} ]; do dd if=/dev/zero of=/dev/null bs=4k count=1 "
            f"skip={offset} 2>/dev/null || break; i=$((i+1)); done; [ $i -eq {loop} ]",
        ),
        ("STATS1", "echo \"STA\"\"TS1=$(cat /sys/block/xvda/stat)\""),
    ]


DOM0_LIST_ROW = re.compile(r"^Domain-0\s+0\s+\d+\s+\d+\s+\S+\s+(\d+\.\d)\s*$")
DISK_CONNECTED = re.compile(r"(?<!\) )\bdom0: domain (\d+): xvda connected")


def block_requests(stat: str) -> int:
    """Reads + writes completed, from a /sys/block/DEV/stat line."""
    fields = stat.split()
    if len(fields) < 8:
        raise RunFailed(f"not a /sys/block stat line: {stat!r}")
    return int(fields[0]) + int(fields[4])


def run_disk_boot(side: Side, args: argparse.Namespace, log_path: Path) -> None:
    """The disk boot: a scratch image (made here, removed afterwards) is the
    appliance's virtio disk; Dom0 serves it whole to the Debian guest
    --disk-name as xvda through blkback. The harness types `list` (Dom0's
    CPU time), attaches to the guest's console, runs dd in it, detaches and
    types `list` again."""
    assert side.disk_command is not None
    name = args.disk_name
    prefix = f"[{name}] "
    fatal = re.compile(
        rf"(?<!\) )\bdom0: domain \d+ \({re.escape(name)}\) shut down|^(create|destroy|console) {re.escape(name)}: |"
        r"(?<!\) )\bdom0: .*\b(failed|error|refused|timed out)\b|dom0 crashed|Kernel panic|I/O error"
    )
    stamps: list[tuple[float, float]] = []
    connected: list[str] = []
    sectors = args.disk_mib * 2048
    disk_seen: list[str] = []

    def observe(now: float, line: str) -> None:
        stamp = HYPERVISOR_STAMP.match(line)
        if stamp:
            stamps.append((float(stamp.group(1)), now))
        if DISK_CONNECTED.search(line):
            connected.append(line)
        if f"dom0: disk virtio0: {sectors} sectors" in line:
            disk_seen.append(line)

    def dom0_seconds(session: Session) -> float:
        session.send("list\r")
        _, _, row = session.wait("`list`'s Domain-0 row", lambda line: DOM0_LIST_ROW.search(line))
        return float(row.group(1))

    with tempfile.TemporaryDirectory(prefix="xenolith-bench-disk-") as scratch:
        image = Path(scratch) / "disk.img"
        with open(image, "wb") as disk:  # zeros, not sparse: every read hits the file
            chunk = bytes(1 << 20)
            for _ in range(args.disk_mib):
                disk.write(chunk)
        command = side.disk_command + [
            "-drive", f"file={image},if=none,format=raw,id=disk0",
            "-device", "virtio-blk-pci,drive=disk0",
        ]  # fmt: skip
        out, process, session = start_session(command, log_path, args.disk_timeout, fatal, observe)
        results: dict[str, list[str]] = {}
        try:
            session.wait("Dom0 ready line", lambda line: XENOLITH_READY.search(line))
            session.wait("Dom0 shell prompt", lambda line: False, prompt=True)
            if not disk_seen:
                raise RunFailed(f"no `dom0: disk virtio0: {sectors} sectors` line before Dom0's prompt")
            session.send(f"create {name}\r")
            session.wait(f"{prefix}{GUEST_SHELL}", lambda line: line.startswith(prefix + GUEST_SHELL))
            if not connected:
                session.wait("Dom0's `xvda connected` line", lambda line: DISK_CONNECTED.search(line))
            domain = DISK_CONNECTED.search(connected[0]).group(1)
            dom0_before = dom0_seconds(session)
            session.send(f"console {name}\r")
            session.wait("attached line", lambda line: f"attached to domain {domain}'s console" in line)
            session.send("\r")
            for label, text in disk_commands(args):
                session.send(text + "\r")
                pattern = re.compile(rf"\b{label}=(.*)$")
                _, _, found = session.wait(f"the guest's {label}= line", lambda line: pattern.search(line))
                results[label] = found.group(1).split()
            session.send("\x1d")  # Ctrl-]: detach
            session.send("\r")
            dom0_after = dom0_seconds(session)
        finally:
            end_session(out, process)
    if len(stamps) < 2 or stamps[-1][0] - stamps[0][0] < 1.0:
        raise RunFailed("too few hypervisor-stamped lines to check its clock against the host's")
    (first_stamp, first_host), (last_stamp, last_host) = stamps[0], stamps[-1]
    clock = (last_stamp - first_stamp) / (last_host - first_host)

    def seconds(label: str) -> float:
        """The step's duration on the host clock (the guest's Xen clock
        runs at the hypervisor's, CLOCK times the host's)."""
        fields = results[label]
        if len(fields) != 3 or fields[0] != "0":
            raise RunFailed(f"the guest's {label} step failed: {' '.join(fields)!r}")
        took = (float(fields[2]) - float(fields[1])) / clock
        if took <= 0:
            raise RunFailed(f"the guest's {label} step took no measurable time: {fields!r}")
        return took

    megabytes = args.disk_seq_mib * (1 << 20) / 1e6
    requests = block_requests(" ".join(results["STATS1"])) - block_requests(" ".join(results["STATS0"]))
    if requests <= 0:
        raise RunFailed("the guest's block statistics counted no requests")
    dom0_cpu = (dom0_after - dom0_before) / clock
    figures = {
        "disk_write": megabytes / seconds("SEQWRITE"),
        "disk_read": megabytes / seconds("SEQREAD"),
        "disk_small": args.disk_small_reads / seconds("SMALLREAD"),
        "disk_random": args.disk_random_reads / seconds("RANDREAD"),
        "disk_loop": args.disk_random_reads / seconds("LOOPONLY"),
        "disk_dom0_cpu": dom0_cpu * 1e6 / requests,
    }
    for key, value in figures.items():
        side.add(key, value)
    log(
        f"  {SIDE_TITLES[side.name]} disk boot: write {figures['disk_write']:,.1f} MB/s, read "
        f"{figures['disk_read']:,.1f} MB/s, 4 KiB direct reads in one dd {figures['disk_small']:,.0f}/s, "
        f"random 4 KiB reads (one dd each) {figures['disk_random']:,.1f}/s, the same loop without the disk "
        f"{figures['disk_loop']:,.1f}/s; Dom0 CPU {dom0_before:.1f} → {dom0_after:.1f} s over {requests} guest "
        f"block requests = {figures['disk_dom0_cpu']:,.0f} µs each; hypervisor clock ÷ host clock {clock:.3f}"
    )
    if abs(clock - 1.0) > 0.05:
        log(f"  warning: the hypervisor's clock ran at {clock:.2f}× the host's in this boot; the disk figures are corrected for it")


def run_ten_boot(side: Side, args: argparse.Namespace, log_path: Path) -> None:
    """The ten-guest boot: Dom0 starts --ten-guests test guests from boot
    modules; their created lines say how much memory Dom0 uses."""
    assert side.ten_command is not None
    count = args.ten_guests
    fatal = re.compile(r"(?<!\) )\bdom0: domain \d+ \(\S+\) shut down \((?!poweroff)|(?<!\) )\bdom0: .*\b(failed|error)\b")
    out, process, session = start_session(side.ten_command, log_path, args.ten_timeout, fatal)
    memory = None
    verdicts = 0
    failures: list[str] = []
    try:
        session.wait("Dom0 ready line", lambda line: XENOLITH_READY.search(line))
        while True:
            _, line, found = session.wait(
                "Dom0's line that all guests are done",
                lambda line: created(line) or GUEST_FAILURE.search(line)
                or TEST_GUEST_VERDICT.search(line) or ALL_GUESTS_DONE.search(line),
            )
            # The guests' own checks are the tests' business, not a figure
            # of this boot: a failed check is reported, not fatal.
            if GUEST_FAILURE.search(line):
                failures.append(line.strip())
                continue
            if TEST_GUEST_VERDICT.search(line):
                verdicts += 1
                continue
            if ALL_GUESTS_DONE.search(line):
                if int(found.group(1)) != count or int(found.group(2)) != 0:
                    raise RunFailed(f"not all {count} guests powered off cleanly: {line!r}")
                break
            if int(found.group(5)) != args.ten_mib:
                raise RunFailed(f"unexpected created line: {line!r}")
            if int(found.group(7)) == count:
                memory = float(found.group(6))
    finally:
        end_session(out, process)
    if memory is None:
        raise RunFailed(f"no created line with {count} guests")
    if verdicts != count:
        raise RunFailed(f"{verdicts} test guest verdicts, expected {count}")
    for failure in failures:
        log(f"  warning: a test guest's check failed in the ten-guest boot (not a bench figure; see {log_path}): {failure}")
    side.add("memory_guests_10", memory)
    log(f"  {SIDE_TITLES[side.name]} ten-guest boot: Dom0 {memory:,.0f} KiB with {count} guests")


def read_lines(process: subprocess.Popen, out, deadline: float, pending: bytearray, partial: bool = False):
    """Yield (time, line) for each serial line until DEADLINE or QEMU exits;
    with PARTIAL, also (time, None) after each chunk that leaves a partial
    line in PENDING."""
    fd = process.stdout.fileno()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            return
        chunk = os.read(fd, 65536)
        now = time.monotonic()
        if not chunk:
            process.wait()
            return
        out.write(chunk)
        out.flush()  # QEMU's stderr goes to the same file
        pending.extend(chunk)
        while b"\n" in pending:
            line, _, rest = pending.partition(b"\n")
            pending[:] = rest
            yield now, line.decode("utf-8", "replace").rstrip("\r")
        if partial and pending:
            yield now, None


def wait_ready(process, side: Side, machine: Machine, started: float, out) -> Console:
    console = Console(side.name, machine)
    pending = bytearray()
    for now, line in read_lines(process, out, started + side.timeout, pending):
        console.line(now, line)
        if console.ready_at is not None:
            if console.banner_at is None:
                raise RunFailed("Dom0 ready, but no hypervisor banner before it")
            return console
    if process.poll() is not None:
        raise RunFailed(f"QEMU exited with status {process.returncode} before Dom0 was ready")
    raise RunFailed(f"no Dom0 ready line within {side.timeout:.0f} s")


def drain(process, out, deadline: float) -> None:
    """Keep reading the console (so QEMU never blocks on it) until DEADLINE."""
    pending = bytearray()
    for _ in read_lines(process, out, deadline, pending):
        pass
    if process.poll() is None and time.monotonic() < deadline:
        time.sleep(max(0.0, deadline - time.monotonic()))


# --- the table ---------------------------------------------------------------


@dataclass
class Figure:
    key: str
    title: str
    unit: str
    digits: int
    # Why the Xen side has no value, when that is known up front.
    xen_missing: str | None = None
    # The Xen side's figure from the manual measurement in QEMU-TCG.md (not
    # from this run): (low, high) in this figure's unit, and its text.
    reference: tuple[float, float] | None = None
    reference_text: str = ""


# The reference boots no guest: its Dom0 has no xl toolstack (and no
# xenstored) to build the test guest.
NO_XL = "the reference has no xl toolstack to start the test guest"


# The Xen column of the toolstack rows: /work/shared/docs/QEMU-TCG.md's
# manual measurement of `xl create` of a 128 MB, 1-vCPU Debian guest on Xen
# 4.17 + Linux Dom0 in the same QEMU machine (2026-11-24). The reference this
# harness boots has no xl toolstack, so these are not figures of the run.
MANUAL = "manual, QEMU-TCG.md, 2026-11-24"
NO_XL_ROW = "the manual reference did not measure it"
MIB = 1024.0  # KiB per MB of QEMU-TCG.md's `free` figures
# The disk rows: neither the harness's reference nor QEMU-TCG.md's manual
# one measured a guest's disk.
NO_DISK = "the reference has no xl toolstack to start a guest with a disk"

MEASURED = [
    Figure("size_hypervisor", "image size: hypervisor", "KiB", 0),
    Figure("size_dom0", "image size: Dom0 kernel", "KiB", 0),
    Figure("size_initrd", "image size: Dom0 initrd/root", "KiB", 0),
    Figure("size_total", "image size: total", "KiB", 0),
    Figure("memory", "Dom0 memory in use after boot", "KiB", 0),
    Figure("banner", "power-on → hypervisor's first console line", "ms", 0),
    Figure("ready", "power-on → Dom0 ready", "ms", 0),
    Figure("idle", "host CPU, idle appliance", "% of a core", 2),
    Figure("create_destroy", "domain create+destroy (Dom0, mean)", "ms", 2, NO_XL),
    Figure("hypercall", "hypercall round trip (guest, xen_version)", "µs", 1, NO_XL),
    Figure("evtchn_send", "event channel send → pending (guest, own IPI port)", "µs", 1, NO_XL),
    Figure("grant_map", "grant map+unmap (guest, own grant)", "µs", 1, NO_XL),
    Figure("grant_copy", "grant copy, 4 KiB per hypercall (guest)", "MB/s", 0, NO_XL),
    Figure("timer_immediate", "timer in the past → VIRQ_TIMER pending (guest)", "µs", 1, NO_XL),
    Figure("timer_wakeup", "timer deadline → polling guest running again", "µs", 1, NO_XL),
    Figure(
        "create_first_instruction",
        "create request → guest's first instruction (Debian guest, 128 MiB)",
        "ms", 0, None, (4200.0, 4200.0),
        f"4.2 s: `xl create` itself, without devices (7.1–7.7 s with a vif and a disk) ({MANUAL})",
    ),
    Figure("create_decompress", "… of which decompressing the bzImage (XZ)", "ms", 0, NO_XL_ROW),
    Figure("create_clock", "hypervisor clock ÷ host clock in that boot (TSC calibration check)", "×", 3, NO_XL_ROW),
    Figure("create_echo", "typing `create` → Dom0 takes the line (serial input)", "ms", 0, NO_XL_ROW),
    Figure(
        "create_console",
        "create request → guest's first console line",
        "s", 2, None, (9.6, 10.9), f"9.6–10.9 s, guest with a vif and a disk ({MANUAL})",
    ),
    Figure(
        "create_userspace",
        "create request → guest userspace (init started)",
        "s", 2, None, (12.2, 13.2), f"12.2–13.2 s to the guest's shell, guest with a vif and a disk ({MANUAL})",
    ),
    Figure(
        "create_cached_first_instruction",
        "create request → guest's first instruction, again with the kernel cached",
        "ms", 0, None, (4200.0, 4200.0), f"4.2 s: `xl create` without devices ({MANUAL}; no cache in xl)",
    ),
    Figure(
        "create_cached_userspace",
        "create request → guest userspace, again with the kernel cached",
        "s", 2, None, (12.2, 13.2), f"12.2–13.2 s to the guest's shell, guest with a vif and a disk ({MANUAL})",
    ),
    Figure(
        "memory_guests_0",
        "Dom0 memory, toolstack up, 0 guests",
        "KiB", 0, None, (32 * MIB, 33 * MIB),
        f"32–33 MB `free` used, with xenstored and xenconsoled ({MANUAL})",
    ),
    Figure(
        "memory_guests_1_created",
        "Dom0 memory, 1 Debian guest, at its creation (with the kernel cache)",
        "KiB", 0, NO_XL_ROW,
    ),
    Figure(
        "memory_guests_1",
        "Dom0 memory, 1 Debian guest running (its shell up; with the kernel cache)",
        "KiB", 0, None, (36 * MIB, 38 * MIB), f"36–38 MB `free` used, guest with a vif and a disk ({MANUAL})",
    ),
    Figure(
        "memory_guests_10",
        "Dom0 memory, 10 guests (test guest, 64 MiB each), at the 10th creation",
        "KiB", 0, NO_XL_ROW,
    ),
    # The disk boot: the Debian guest's dd on xvda, served by Dom0's blkback
    # from the appliance's virtio disk. No figure of the manual reference.
    Figure("disk_write", "block MB/s: sequential write (guest dd, 1 MiB O_DIRECT + fsync)", "MB/s", 1, NO_DISK),
    Figure("disk_read", "block MB/s: sequential read (guest dd, 1 MiB O_DIRECT)", "MB/s", 1, NO_DISK),
    Figure("disk_small", "block IOPS: 4 KiB O_DIRECT reads, one request at a time (one guest dd, consecutive blocks)", "IOPS", 0, NO_DISK),
    Figure("disk_random", "block IOPS: 4 KiB random O_DIRECT reads, one dd process per read (shell loop)", "IOPS", 1, NO_DISK),
    Figure("disk_loop", "… the same shell loop reading /dev/zero instead (process start-up alone)", "per s", 1, NO_DISK),
    Figure("disk_dom0_cpu", "Dom0 CPU time per I/O (guest block request, from `list`)", "µs", 0, NO_DISK),
]

# Figures the issue asks for whose capability does not exist on both sides yet,
# with what is missing.
NOT_YET = [
    ("network throughput", "Xenolith has no netback yet"),
    ("network RTT", "Xenolith has no netback yet"),
]


def fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def cell(values: list[float] | None, figure: Figure) -> str:
    if not values:
        return "not yet measurable"
    median = statistics.median(values)
    low, high = min(values), max(values)
    space = "" if figure.unit == "×" else " "
    text = f"{fmt(median, figure.digits)}{space}{figure.unit}"
    if fmt(low, figure.digits) != fmt(high, figure.digits):
        text += f" [{fmt(low, figure.digits)}–{fmt(high, figure.digits)}]"
    return text


def fmt_ratio(r: float) -> str:
    return f"{r:,.0f}×" if r >= 100 else f"{r:.3g}×"


def ratio(xen: list[float] | None, xenolith: list[float] | None) -> str:
    if not xen or not xenolith:
        return "—"
    a, b = statistics.median(xen), statistics.median(xenolith)
    if b == 0:
        return "—"
    return fmt_ratio(a / b)


def table(sides: dict[str, Side]) -> list[str]:
    xen, xenolith = sides[XEN], sides[XENOLITH]
    lines = [
        f"| figure | {SIDE_TITLES[XEN]} | {SIDE_TITLES[XENOLITH]} | ratio Xen ÷ Xenolith |",
        "|---|---|---|---|",
    ]
    for figure in MEASURED:
        a, b = xen.results.get(figure.key), xenolith.results.get(figure.key)
        if figure.reference:
            # The Xen side from the manual measurement, not from this run.
            low, high = figure.reference
            right = cell(b, figure)
            if b and statistics.median(b) > 0:
                median = statistics.median(b)
                spread = f"{fmt_ratio(low / median)}–{fmt_ratio(high / median)}" if high != low else fmt_ratio(low / median)
                spread += " (manual figure)"
            else:
                spread = "—"
            lines.append(f"| {figure.title} | {figure.reference_text} | {right} | {spread} |")
            continue
        if figure.key == "size_initrd" and a and b and max(b) == 0:
            right = "none (0 KiB)"
            lines.append(f"| {figure.title} | {cell(a, figure)} | {right} | — |")
            continue
        if not a or not b:
            # Measured on one side only: not comparable yet.
            left = cell(a, figure) if a else "not yet measurable"
            if not a and figure.xen_missing:
                left += f" ({figure.xen_missing})"
            right = cell(b, figure) if b else "not yet measurable"
            lines.append(f"| {figure.title} | {left} | {right} | not yet measurable |")
            continue
        lines.append(f"| {figure.title} | {cell(a, figure)} | {cell(b, figure)} | {ratio(a, b)} |")
    for title, why in NOT_YET:
        lines.append(f"| {title} | not yet measurable | not yet measurable ({why}) | — |")
    return lines


def qemu_version() -> str:
    try:
        first = subprocess.run(
            ["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"
    return first.replace("QEMU emulator version ", "")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def header(args: argparse.Namespace, machine: Machine, load: tuple, load_end: tuple) -> list[str]:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    versions = Path(args.xen_dir, "versions")
    packages = []
    if versions.is_file():
        packages = [
            " ".join(line.split()[:2])
            for line in versions.read_text().splitlines()
            if not line.startswith("dom0-init")
        ]
    return [
        f"Run {now}: {args.runs} run(s) of each side, alternating"
        + (" (--quick: checks the harness, figures are not meaningful)" if args.quick else ""),
        f"Host: {os.cpu_count()} CPUs, {cpu_model()}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start, "
        f"{load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f} at end",
        f"QEMU {qemu_version()}: -accel tcg,thread=multi -cpu {machine.cpu} "
        f"-m {machine.memory} -smp {machine.cpus}; Dom0 {machine.dom0_mem_mib} MiB on both sides",
        "Reference: " + ("; ".join(packages) if packages else "(versions unknown)"),
        f"Serial logs: {args.log_dir}",
    ]


def sizes(side: Side) -> None:
    total = 0
    for role in ("hypervisor", "dom0", "initrd"):
        path = side.files.get(role)
        size = path.stat().st_size if path else 0
        key = "size_" + role
        side.results[key] = [size / 1024]
        total += size
    side.results["size_total"] = [total / 1024]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--xen-dir", required=True)
    parser.add_argument("--xenolith-dir", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--out", help="also write the report here")
    parser.add_argument("--memory", default="2G")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--cpu", default="EPYC,-monitor,-smap")
    parser.add_argument("--dom0-mem", type=int, default=512, help="MiB, both sides")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after ready before the idle window")
    parser.add_argument("--idle", type=float, default=5.0, help="idle window, seconds")
    parser.add_argument("--xen-timeout", type=float, default=180.0)
    parser.add_argument("--xenolith-timeout", type=float, default=30.0)
    parser.add_argument(
        "--guest-iso",
        help="Xenolith ISO whose Dom0 runs the create/destroy cycles and the bench test guest "
        "(scripts/bench makes it); without it the guest rows stay not yet measurable",
    )
    parser.add_argument("--cycles", type=int, default=20, help="Dom0 create/destroy cycles the guest ISO runs")
    parser.add_argument("--guest-timeout", type=float, default=60.0, help="seconds for a whole guest boot")
    parser.add_argument(
        "--debian-iso",
        help="Xenolith ISO whose Dom0 defines the Debian guest --debian-name and starts none "
        "(scripts/bench makes it); without it the create-request rows stay not yet measurable",
    )
    parser.add_argument("--debian-name", default="debian", help="the Debian guest's name")
    parser.add_argument("--debian-mib", type=int, default=128, help="the Debian guest's memory, MiB")
    parser.add_argument("--debian-timeout", type=float, default=120.0, help="seconds for a whole Debian boot")
    parser.add_argument(
        "--ten-iso",
        help="Xenolith ISO whose Dom0 starts --ten-guests guests from boot modules and powers off "
        "once they are done (scripts/bench makes it)",
    )
    parser.add_argument("--ten-guests", type=int, default=10, help="guests the ten-guest ISO starts")
    parser.add_argument("--ten-mib", type=int, default=64, help="memory of each of those guests, MiB")
    parser.add_argument("--ten-timeout", type=float, default=60.0, help="seconds for a whole ten-guest boot")
    parser.add_argument(
        "--disk-iso",
        help="Xenolith ISO whose Dom0 defines the Debian guest --disk-name with disk target=virtio0 and "
        "starts none (scripts/bench makes it); the harness adds the scratch disk",
    )
    parser.add_argument("--disk-name", default="disk", help="the disk guest's name")
    parser.add_argument("--disk-mib", type=int, default=256, help="size of the scratch disk image, MiB")
    parser.add_argument("--disk-seq-mib", type=int, default=64, help="MiB each sequential dd moves")
    parser.add_argument("--disk-small-reads", type=int, default=2048, help="4 KiB reads of the one-dd IOPS figure")
    parser.add_argument("--disk-random-reads", type=int, default=200, help="iterations of the random-read shell loop")
    parser.add_argument("--disk-timeout", type=float, default=180.0, help="seconds for a whole disk boot")
    args = parser.parse_args()
    # A SIGTERM (a timeout around the whole script) unwinds like Ctrl-C, so
    # the QEMU being run is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    machine = Machine(args.memory, args.cpus, args.cpu, args.dom0_mem)
    sides = {XENOLITH: xenolith_side(args, machine), XEN: xen_side(args, machine)}
    if args.guest_iso:
        if not Path(args.guest_iso).is_file():
            raise SystemExit(f"bench: error: {args.guest_iso} missing")
        sides[XENOLITH].guest_command = machine.qemu_base() + ["-cdrom", args.guest_iso, "-boot", "d"]
    for option, attribute in (("debian_iso", "debian_command"), ("ten_iso", "ten_command"), ("disk_iso", "disk_command")):
        iso = getattr(args, option)
        if iso:
            if not Path(iso).is_file():
                raise SystemExit(f"bench: error: {iso} missing")
            setattr(sides[XENOLITH], attribute, machine.qemu_base() + ["-cdrom", iso, "-boot", "d"])
    for side in sides.values():
        for path in side.files.values():
            if not path.is_file():
                raise SystemExit(f"bench: error: {path} missing")
        sizes(side)

    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    started = time.monotonic()
    for run in range(1, args.runs + 1):
        log(f"run {run}/{args.runs}")
        xenolith, xen = sides[XENOLITH], sides[XEN]
        boots = [
            (SIDE_TITLES[XENOLITH], f"{XENOLITH}-{run}.log", lambda path: run_once(xenolith, machine, args, path)),
            (SIDE_TITLES[XEN], f"{XEN}-{run}.log", lambda path: run_once(xen, machine, args, path)),
        ]
        if xenolith.guest_command:
            guests_title = f"{SIDE_TITLES[XENOLITH]} guest boot"
            boots.append((guests_title, f"{XENOLITH}-guests-{run}.log", lambda path: run_guest_bench(xenolith, args, path)))
        if xenolith.debian_command:
            boots.append((f"{SIDE_TITLES[XENOLITH]} Debian boot", f"{XENOLITH}-debian-{run}.log",
                          lambda path: run_debian_boot(xenolith, args, path)))
        if xenolith.ten_command:
            boots.append((f"{SIDE_TITLES[XENOLITH]} ten-guest boot", f"{XENOLITH}-ten-{run}.log",
                          lambda path: run_ten_boot(xenolith, args, path)))
        if xenolith.disk_command:
            boots.append((f"{SIDE_TITLES[XENOLITH]} disk boot", f"{XENOLITH}-disk-{run}.log",
                          lambda path: run_disk_boot(xenolith, args, path)))
        for title, log_name, boot in boots:
            log_path = log_dir / log_name
            try:
                boot(log_path)
            except RunFailed as error:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                print("\n".join("    " + line for line in tail), file=sys.stderr)
                log(f"error: {title}, run {run}: {error} (serial log: {log_path})")
                return 1
    log(f"all runs done in {time.monotonic() - started:.0f} s")

    report = header(args, machine, load, os.getloadavg()) + [""] + table(sides)
    text = "\n".join(report) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
