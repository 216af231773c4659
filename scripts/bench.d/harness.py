#!/usr/bin/env python3
"""Boot Xen 4.17 + Linux Dom0 and Xenolith in the same QEMU, alternating, and
print one Markdown table of figures (median [min-max] of N runs, and the ratio
Xen / Xenolith). Called by scripts/bench, which builds both sides first.

Standard library only. Each run is one boot of each side: QEMU starts, the
harness waits for Dom0's ready line on the serial console (power-on -> Dom0
ready), reads Dom0's memory figure from that line, lets the machine settle, then
samples the QEMU process's CPU time over an idle window, and stops QEMU.

On the Xenolith side each run adds a guest boot (--guest-iso): Dom0 creates
and destroys a guest --cycles times, then starts the test guest in bench mode;
the harness reads the create+destroy time and the guest's `test-guest: bench`
figures. On Xen the toolstack boot measures them (below).

Xenolith's Debian boot (--debian-iso) defines one Debian guest from xl.cfg
boot modules and starts none; the harness types `info` (Dom0 memory, 0
guests), then `create NAME`, reads Dom0's created line (create -> unpause and
the decompression part, in ms of Dom0's TSC, corrected by the hypervisor
clock's rate against the host's), times the guest's first console line and
its `init started` line from Dom0's echo of the request by their arrival on
the serial pipe, and types `info` again once the guest's shell is up; then it
destroys the guest and creates it again (Dom0 has the kernel cached). The
ten-guest boot (--ten-iso) reads Dom0's memory from the tenth created line.

Xenolith's disk boot (--disk-iso) gives a Debian guest a scratch disk image
(made here, removed afterwards) served whole through Dom0's blkback and runs
Debian's fio in its shell (scripts/bench.d/guest-tools): 1 MiB sequential
O_DIRECT write and read MB/s, 4 KiB random O_DIRECT read and write IOPS at
queue depths 1 and 32, and Dom0's CPU time from `list` before and after over
the guest's block requests. Xenolith's network boot (--net-iso) starts two
guests with vifs on Dom0's bridge and QEMU's user network: DHCP, ping RTT to
the gateway and between them, iperf3 TCP MB/s to the other guest and to an
iperf3 server on the host, and Dom0's CPU time over the vifs' packets
during those transfers.

The Xen toolstack boot (--xen-bench-initrd) boots Xen with Debian's xl
toolstack, blkback, netback and a bridge in Dom0's initramfs, and types `xl
create -c` of the same Debian guest (twice), disk guest and network guests
into Dom0's shell, running the same guest commands: the Xen column of the
creation, memory, disk and network rows. Last it `xl create -c`s the test
guest in bench mode: Debian's release Xen refuses console_io to DomUs, so the
guest reports on its PV console ring, which `xl create -c` shows; a failure
there costs only the test guest's rows.
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
# The same report as `xl console` shows it on Xen: the guest writes it to its
# PV console ring when console_io is refused, so no "(dN) " prefix.
RING_FIGURE = re.compile(r"test-guest: bench ([\w-]+) (\d+) (\S+)")
RING_FAILURE = re.compile(r"test-guest: (FAIL .*)")
RING_VERDICT = re.compile(r"test-guest: (\d+) passed, (\d+) failed")
# The toolstack boots (Xenolith only): Dom0's created line, its `info`
# output, the guest's console mirrored as "[NAME] ...".
CREATED_LINE = re.compile(
    r"(?<!\) )\bdom0: created domain (\d+) \((\S+)\) in (\d+) ms "
    r"\((?:(\d+) ms decompressing the kernel|kernel from the cache|an ELF kernel|HVM: [^)]*)\): "
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
    # The network boot (Xenolith with --net-iso), with its NIC.
    net_command: list[str] | None = None
    # The toolstack boot (Xen with --xen-bench-initrd), without its disk and NIC.
    toolstack_command: list[str] | None = None
    # Figures of boots not made in this run -> what to print instead.
    skipped: dict[str, str] = field(default_factory=dict)
    # Figures a boot failed to measure -> why, and in how many boots.
    failed: dict[str, tuple[str, int]] = field(default_factory=dict)

    def add(self, figure: str, value: float | None) -> None:
        if value is not None:
            self.results.setdefault(figure, []).append(value)

    def record(self, figures: dict[str, float], failures: dict[str, str]) -> None:
        """One boot's figures, and the reasons for those it failed to take."""
        for key, value in figures.items():
            self.add(key, value)
        for key, why in failures.items():
            self.failed[key] = (why, self.failed.get(key, ("", 0))[1] + 1)
            log(f"  warning: {SIDE_TITLES[self.name]}: {key}: {why}")


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


def xen_command(machine: Machine, ref: Path, initrd: Path) -> list[str]:
    """QEMU's command line booting Xen with Debian's kernel as Dom0 and
    INITRD as its initramfs."""
    mem = machine.dom0_mem_mib
    return machine.qemu_base() + [
        "-kernel", module_path(ref / "xen-4.17-amd64"),
        "-append", f"console=com1 com1=115200,8n1 dom0_mem={mem}M,max:{mem}M",
        "-initrd",
        f"{module_path(ref / 'vmlinuz')} console=hvc0 earlyprintk=xen,{module_path(initrd)}",
    ]  # fmt: skip


def xen_side(args: argparse.Namespace, machine: Machine) -> Side:
    ref = Path(args.xen_dir)
    files = {
        "hypervisor": ref / "xen-4.17-amd64",
        "dom0": ref / "vmlinuz",
        "initrd": ref / "dom0-initrd.cpio.gz",
    }
    return Side(XEN, files, xen_command(machine, ref, files["initrd"]), args.xen_timeout)


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


def launch(command: list[str], out, stdin=subprocess.DEVNULL) -> tuple[subprocess.Popen, float]:
    """Starts QEMU's COMMAND with its serial console on a pipe and its
    stderr in the boot's log OUT, headed by the command line; returns the
    process and the host time it started."""
    out.write(("$ " + shlex.join(command) + "\n").encode())
    out.flush()
    started = time.monotonic()
    process = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=out, preexec_fn=die_with_parent)
    return process, started


def run_once(side: Side, machine: Machine, args: argparse.Namespace, log_path: Path) -> None:
    """One boot of SIDE: records ready time, memory in use and idle CPU."""
    with open(log_path, "wb") as out:
        process, started = launch(side.command, out)
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
        process, started = launch(command, out)
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


def read_ring_report(line: str, figures: dict[str, float], failures: list[str]):
    """Reads one line of the bench test guest's report as `xl console`
    shows it: a figure into FIGURES (by table key, in the table's unit), a
    failure into FAILURES. Returns the verdict's match on the verdict line."""
    figure = RING_FIGURE.search(line)
    if figure and figure.group(1) in GUEST_FIGURES:
        key, unit, factor = GUEST_FIGURES[figure.group(1)]
        if figure.group(3) != unit:
            raise RunFailed(f"guest figure {figure.group(1)} in {figure.group(3)}, expected {unit}")
        figures[key] = int(figure.group(2)) * factor
    failure = RING_FAILURE.search(line)
    if failure:
        failures.append(failure.group(1))
    return RING_VERDICT.search(line)


def guest_report_gaps(figures: dict[str, float], failures: list[str], verdict) -> dict[str, str]:
    """The figures the report lacks (table key -> why: the guest's FAIL
    line for it, if any). Fails if the report has no verdict."""
    if verdict is None:
        raise RunFailed("the bench guest ended without a verdict" + (": " + "; ".join(failures) if failures else ""))
    gaps = {}
    for name, (key, _, _) in GUEST_FIGURES.items():
        if key not in figures:
            why = [failure for failure in failures if failure.startswith(f"FAIL bench-{name}:")]
            gaps[key] = why[0] if why else "not reported"
    return gaps


class Session:
    """One interactive boot: follows the serial console line by line (with
    the host time each line arrived) and types on it (QEMU's stdin)."""

    def __init__(self, process: subprocess.Popen, out, deadline: float, timeout: float, fatal: re.Pattern, observe=None,
                 prompt: bytes = SHELL_PROMPT):
        self.prompt = prompt  # Dom0's shell prompt
        # (bytes, seconds): type at most that many bytes at once, then wait.
        self.typing: tuple[int, float] | None = None
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
        """Types TEXT; returns the host time its last byte was written."""
        if self.process.poll() is not None or self.process.stdin is None:
            raise RunFailed(f"QEMU exited (status {self.process.returncode}) before typing {text!r}")
        data = text.encode()
        step = self.typing[0] if self.typing else len(data) or 1
        for start in range(0, len(data), step):
            if start and self.typing:
                time.sleep(self.typing[1])
            self.process.stdin.write(data[start:start + step])
            self.process.stdin.flush()
        return time.monotonic()

    def wait(self, what: str, match, prompt: bool = False):
        """Reads lines until MATCH(line) is true; returns (arrival time,
        line, MATCH's value). With PROMPT, Dom0's shell prompt at the end of
        the output read so far (it has no newline) also ends the wait."""
        for now, line in self.lines:
            if line is None:  # a chunk that ended mid-line
                # busybox's line editor asks for the cursor position (ESC [6n)
                # after its prompt.
                if prompt and self.pending.removesuffix(b"\x1b[6n").endswith(self.prompt):
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


def start_session(command: list[str], log_path: Path, timeout: float, fatal: re.Pattern, observe=None,
                  prompt: bytes = SHELL_PROMPT):
    out = open(log_path, "wb")
    process, started = launch(command, out, stdin=subprocess.PIPE)
    return out, process, Session(process, out, started + timeout, timeout, fatal, observe, prompt)


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
        prompt_at, _, _ = session.wait("Dom0 shell prompt", lambda line: False, prompt=True)
        toolstack_ready = (prompt_at - (session.deadline - session.timeout)) * 1000.0
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
        "toolstack_ready": toolstack_ready,
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
    if found.group(4) is None and "kernel from the cache" not in line:
        raise RunFailed(f"expected a bzImage, decompressed or from the cache: {line!r}")
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


# The disk boots: the guest's shell commands. Each ends by echoing LABEL=
# (spelled in two quoted halves where the typed line holds it, so that the
# shell's echo of the typed line does not match).


@dataclass
class FioJob:
    label: str
    key: str  # the figure
    rw: str  # fio's --rw
    block: str  # fio's --bs
    depth: int  # fio's --iodepth

    def writes(self) -> bool:
        return "write" in self.rw


# One fio job a step, in this order: the sequential write fills the disk
# first (the image is zeros already, so nothing reads unwritten blocks).
FIO_JOBS = [
    FioJob("SEQWRITE", "disk_write", "write", "1M", 1),
    FioJob("SEQREAD", "disk_read", "read", "1M", 1),
    FioJob("RANDREAD1", "disk_randread_1", "randread", "4k", 1),
    FioJob("RANDREAD32", "disk_randread_32", "randread", "4k", 32),
    FioJob("RANDWRITE1", "disk_randwrite_1", "randwrite", "4k", 1),
    FioJob("RANDWRITE32", "disk_randwrite_32", "randwrite", "4k", 32),
]


def fio_command(job: FioJob, runtime: int) -> str:
    """The guest's fio run of JOB on the whole disk for RUNTIME seconds:
    scripts/bench.d/guest/bench-fio echoes LABEL=STATUS and fio's figures
    (or its first error line). A short line to type, so that the Dom0 CPU
    window holds little serial input."""
    return f"bench-fio {job.label} {job.rw} {job.block} {job.depth} {runtime}"


def disk_commands(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The disk guest's steps: its block statistics before and after the
    fio jobs."""
    return (
        [("STATS0", "s0=\"$(cat /sys/block/xvda/stat)\"; echo \"STA\"\"TS0=$s0\"")]
        + [(job.label, fio_command(job, args.fio_runtime)) for job in FIO_JOBS]
        + [("STATS1", "echo \"STA\"\"TS1=$(cat /sys/block/xvda/stat)\"")]
    )


DOM0_LIST_ROW = re.compile(r"^Domain-0\s+0\s+\d+\s+\d+\s+\S+\s+(\d+\.\d)\s*$")
DISK_CONNECTED = re.compile(r"(?<!\) )\bdom0: domain (\d+): xvda connected")


def block_requests(stat: str) -> int:
    """Reads + writes completed, from a /sys/block/DEV/stat line."""
    fields = stat.split()
    if len(fields) < 8:
        raise RunFailed(f"not a /sys/block stat line: {stat!r}")
    return int(fields[0]) + int(fields[4])


def scratch_disk(directory: Path, mib: int) -> list[str]:
    """Makes a MIB MiB image of zeros in DIRECTORY (not sparse: every read
    hits the file); returns QEMU's arguments for it as a virtio disk."""
    image = directory / "disk.img"
    with open(image, "wb") as disk:
        chunk = bytes(1 << 20)
        for _ in range(mib):
            disk.write(chunk)
    return [
        "-drive", f"file={image},if=none,format=raw,id=disk0",
        "-device", "virtio-blk-pci,drive=disk0",
    ]  # fmt: skip


def run_disk_boot(side: Side, args: argparse.Namespace, log_path: Path) -> None:
    """The disk boot: a scratch image (made here, removed afterwards) is the
    appliance's virtio disk; Dom0 serves it whole to the Debian guest
    --disk-name as xvda through blkback. The harness types `list` (Dom0's
    CPU time), attaches to the guest's console, runs the fio jobs in it, detaches and
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

    with tempfile.TemporaryDirectory(prefix="xenolith-bench-disk-") as scratch:
        command = side.disk_command + scratch_disk(Path(scratch), args.disk_mib)
        out, process, session = start_session(command, log_path, args.disk_timeout, fatal, observe)
        shell = XenolithShell(session)
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
            dom0_before = shell.cpu_seconds()
            shell.attach(name, domain)
            for label, text in disk_commands(args):
                results[label] = guest_step(session, label, text)
            shell.detach()
            dom0_after = shell.cpu_seconds()
        finally:
            end_session(out, process)
    clock = clock_rate(stamps)
    figures, failures = disk_figures(results, clock, dom0_before, dom0_after)
    side.record(figures, failures)
    log_disk(side, figures, failures, dom0_before, dom0_after, clock)


def disk_figures(results: dict[str, list[str]], clock: float, dom0_before: float, dom0_after: float):
    """The block rows from the guest's fio lines (its clock runs at CLOCK
    times the host's) and Dom0's CPU seconds from `list` / `xl list` before
    and after. Returns (figures, failures: figure -> why); a job that failed
    costs only its row."""
    figures: dict[str, float] = {}
    failures: dict[str, str] = {}
    for job in FIO_JOBS:
        fields = results.get(job.label, [])
        try:
            # fio's own IOPS figure is rounded: count from KiB and runtime.
            status, error, read_kib, _, _, read_ms, write_kib, _, _, write_ms = fields
            if status != "0" or error != "0":
                raise ValueError
            kib, runtime_ms = (write_kib, write_ms) if job.writes() else (read_kib, read_ms)
            kib, runtime_ms = float(kib), float(runtime_ms)
        except ValueError:
            failures[job.key] = f"fio failed: {' '.join(fields)[:160] or 'no output'}"
            continue
        if runtime_ms <= 0 or kib <= 0:
            failures[job.key] = f"fio moved nothing: {' '.join(fields)}"
            continue
        # fio's runtime is on the guest's clock: per host second is CLOCK times more.
        if job.block == "1M":
            figures[job.key] = kib * 1024 / 1e6 / (runtime_ms / 1000) * clock
        else:
            figures[job.key] = kib / 4 / (runtime_ms / 1000) * clock
    requests = block_requests(" ".join(results["STATS1"])) - block_requests(" ".join(results["STATS0"]))
    if requests <= 0:
        raise RunFailed("the guest's block statistics counted no requests")
    figures["disk_dom0_cpu"] = (dom0_after - dom0_before) / clock * 1e6 / requests
    figures["disk_requests"] = float(requests)
    return figures, failures


def log_disk(side: Side, figures: dict[str, float], failures: dict[str, str], dom0_before: float,
             dom0_after: float, clock: float) -> None:
    jobs = ", ".join(
        f"{job.label.lower()} " + (
            f"{figures[job.key]:,.1f} {'MB/s' if job.block == '1M' else 'IOPS'}" if job.key in figures
            else failures.get(job.key, "missing")
        )
        for job in FIO_JOBS
    )
    log(
        f"  {SIDE_TITLES[side.name]} disk: {jobs}; Dom0 CPU {dom0_before:.1f} → {dom0_after:.1f} s over "
        f"{figures['disk_requests']:.0f} guest block requests = {figures['disk_dom0_cpu']:,.0f} µs each; "
        f"guest clock ÷ host clock {clock:.3f}"
    )
    if abs(clock - 1.0) > 0.05:
        log(f"  warning: the guest's clock ran at {clock:.2f}× the host's in this boot; the disk figures are corrected for it")


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


# --- the network boots and the Xen toolstack boot -----------------------------
#
# The same guest shell commands run on both sides: in the Xenolith boots the
# harness attaches with Dom0's `console NAME`, in the Xen boot with `xl
# console NAME` (or `xl create -c`). Both detach with Ctrl-].

XEN_TOOLSTACK_READY = re.compile(r"XEN-TOOLSTACK-READY\b(.*)")
XEN_MEM = re.compile(r"XEN-MEM\b(.*)")
XEN_PROMPT = b"xen-dom0# "
# The first line of the guest's kernel on its console (Linux's printk stamp).
GUEST_KERNEL_LINE = re.compile(r"\[\s*0\.000000\] Linux version")
PING_SUMMARY = re.compile(r"round-trip min/avg/max = ([\d.]+)/([\d.]+)/([\d.]+) ms")
LEASE_LINE = re.compile(r"udhcpc: lease of (10\.0\.2\.\d+) obtained")
VIF_CONNECTED = re.compile(r"(?<!\) )\bdom0: domain (\d+): vif\d+\.0 connected")
# The guests of the network boots: the receiver first, then the sender.
NET_GUESTS = ("net-b", "net-a")
NET_GATEWAY = "10.0.2.2"  # QEMU's user network: the host


def used_kib(meminfo: dict[str, str], image_kib: int) -> float:
    """Dom0 memory in use as `free` counts it (not free, not buffers or page
    cache), plus the resident kernel image, which MemTotal leaves out. The
    initramfs root is tmpfs, in Cached: left out, as a disk root's page cache
    would be."""
    try:
        total, free, buffers, cached, reclaimable = (
            int(meminfo[key]) for key in ("MemTotal", "MemFree", "Buffers", "Cached", "SReclaimable")
        )
    except (KeyError, ValueError):
        raise RunFailed(f"memory figures without MemTotal/MemFree/Buffers/Cached/SReclaimable: {meminfo}") from None
    return float(image_kib + total - free - buffers - cached - reclaimable)


def guest_step(session: Session, label: str, command: str, timeout_what: str = "") -> list[str]:
    """Types COMMAND (which ends by echoing LABEL=...) into the attached guest
    shell; returns the fields after LABEL=."""
    session.send(command + "\r")
    pattern = re.compile(rf"\b{label}=(.*)$")
    _, _, found = session.wait(timeout_what or f"the guest's {label}= line", lambda line: pattern.search(line))
    return found.group(1).split()


def net_receiver_commands() -> list[tuple[str, str]]:
    """The receiving guest: a DHCP lease, then an iperf3 server in the
    background."""
    return [
        ("LEASEB", LEASE.format(a="LEA", b="SEB")),
        ("SERVER", "iperf3 -s -D >/dev/null 2>&1; echo \"SER\"\"VER=$?\""),
    ]


# A DHCP lease on eth0, echoing LABEL=STATUS ADDRESS.
LEASE = (
    "ip link set eth0 up && udhcpc -i eth0 -n -q -t 10 -T 3 >/dev/null 2>&1; "
    "echo \"{a}\"\"{b}=$? $(ip -4 -o addr show eth0 | sed 's/.* inet \\([0-9.]*\\).*/\\1/')\""
)


def net_sender_commands(args: argparse.Namespace, peer: str) -> list[tuple[str, str]]:
    """The sending guest before the measured window: a lease, then ping the
    gateway and the peer."""
    count = args.net_pings
    return [
        ("LEASEA", LEASE.format(a="LEA", b="SEA")),
        ("PINGGW", f"echo \"PIN\"\"GGW=$(ping -c {count} -i 0.2 {NET_GATEWAY} | tail -n 1)\""),
        ("PINGPEER", f"echo \"PIN\"\"GPEER=$(ping -c {count} -i 0.2 {peer} | tail -n 1)\""),
    ]


def iperf3_command(label: str, server: str, port: int, seconds: int) -> str:
    """The sender's iperf3 run to SERVER:PORT for SECONDS:
    scripts/bench.d/guest/bench-iperf3 echoes LABEL=STATUS and iperf3's
    receiver summary line (or its last line)."""
    return f"bench-iperf3 {label} {server} {port} {seconds}"


def net_transfer_commands(args: argparse.Namespace, peer: str, host_port: int) -> list[tuple[str, str]]:
    """The sending guest's TCP transfers, inside the measured window: to the
    peer's iperf3 server, then to the host's."""
    return [
        ("TCPPEER", iperf3_command("TCPPEER", peer, IPERF3_PORT, args.net_seconds)),
        ("TCPOUT", iperf3_command("TCPOUT", NET_GATEWAY, host_port, args.net_seconds)),
    ]


# iperf3's summary line as the client prints it with -f k: the interval on
# the receiver's clock and the rate it received at.
IPERF3_RECEIVER = re.compile(r"([\d.]+)-([\d.]+)\s+sec\s+.*?\s([\d.]+) Kbits/sec\s.*\breceiver\b")
IPERF3_PORT = 5201  # iperf3's default, the receiving guest's server


class HostIperf3:
    """Debian's iperf3 (from scripts/bench.d/guest-tools' unpacked root, run
    with that root's dynamic loader) as a one-test server on the host's
    127.0.0.1, which QEMU's user network reaches as 10.0.2.2:PORT. Its JSON
    report is the guest → outside figure, on the host's clock."""

    def __init__(self, root: Path, log_dir: Path):
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        libraries = f"{root}/lib/x86_64-linux-gnu:{root}/usr/lib/x86_64-linux-gnu"
        self.report = log_dir / f"iperf3-server-{self.port}.json"
        self.stream = open(self.report, "wb")
        self.process = subprocess.Popen(
            [f"{root}/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "--library-path", libraries,
             f"{root}/usr/bin/iperf3", "-s", "-1", "-J", "-B", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=self.stream, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )

    def close(self) -> None:
        stop(self.process)
        self.stream.close()

    def received(self) -> tuple[float, float] | str:
        """(bytes, seconds) the server received in its test, or why not."""
        import json

        try:
            summary = json.loads(self.report.read_text())["end"]["sum_received"]
            return float(summary["bytes"]), float(summary["seconds"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            return f"no report from the host's iperf3 server ({error!r}; see {self.report})"


def net_figures(results: dict[str, list[str]], clock: float, host: HostIperf3,
                window: dict[str, float]):
    """The network rows: ping averages, iperf3's receiver rates (a guest
    receiver's rate is on the guest's clock, CLOCK times the host's; the
    host's server's on the host's), and Dom0's CPU time per packet over
    WINDOW. Returns (figures, failures: figure -> why)."""
    figures: dict[str, float] = {}
    failures: dict[str, str] = {}
    for label, key in (("PINGGW", "net_rtt_gateway"), ("PINGPEER", "net_rtt_peer")):
        summary = PING_SUMMARY.search(" ".join(results[label]))
        if summary:
            figures[key] = float(summary.group(2))
        else:
            failures[key] = f"no ping summary: {' '.join(results[label])[:120]!r}"
    peer = results["TCPPEER"]
    summary = IPERF3_RECEIVER.search(" ".join(peer[1:]))
    if peer[:1] == ["0"] and summary:
        figures["net_tcp_peer"] = float(summary.group(3)) * 1000 / 8 / 1e6 * clock
    else:
        failures["net_tcp_peer"] = f"iperf3 failed: {' '.join(peer)[:160]}"
    received = host.received()
    if results["TCPOUT"][:1] != ["0"]:
        failures["net_tcp_out"] = f"iperf3 failed: {' '.join(results['TCPOUT'])[:160]}"
    elif isinstance(received, str):
        failures["net_tcp_out"] = received
    elif received[1] > 0:
        figures["net_tcp_out"] = received[0] / received[1] / 1e6
    packets = window["packets_after"] - window["packets_before"]
    if packets > 0:
        figures["net_dom0_cpu"] = (window["cpu_after"] - window["cpu_before"]) / clock * 1e6 / packets
        figures["net_packets"] = packets
        figures["net_bytes_per_packet"] = (window["bytes_after"] - window["bytes_before"]) / packets
    else:
        failures["net_dom0_cpu"] = "Dom0's vif counters counted no packets"
    return figures, failures


def net_qemu_args() -> list[str]:
    return [
        "-netdev", "user,id=net0",
        # No option ROM: the BIOS need not load iPXE.
        "-device", "virtio-net-pci,netdev=net0,romfile=",
    ]  # fmt: skip


def with_nic(command: list[str]) -> list[str]:
    """COMMAND with QEMU's user network instead of `-nic none`."""
    out = list(command)
    index = out.index("-nic")
    del out[index:index + 2]
    return out + net_qemu_args()


def clock_rate(stamps: list[tuple[float, float]]) -> float:
    """A guest-visible clock's rate against the host's, from (stamp, host
    arrival) pairs at least a second apart."""
    if len(stamps) < 2 or stamps[-1][0] - stamps[0][0] < 1.0:
        raise RunFailed("too few stamped lines to check the hypervisor's clock against the host's")
    (first_stamp, first_host), (last_stamp, last_host) = stamps[0], stamps[-1]
    return (last_stamp - first_stamp) / (last_host - first_host)


# A guest vif's counters on Xenolith's `info`: TX is from the guest.
XENOLITH_VIF = re.compile(r"^vif\d+\.\d+\s*: (?:not )?connected; tx (\d+) packets (\d+) bytes.*?, rx (\d+) packets (\d+) bytes")
# The same from Linux's sysfs on Xen (rx is from the guest there), as the
# loop of XenShell.vif_traffic echoes it.
XEN_VIF = re.compile(r"VIFSTAT vif\d+\.\d+ (\d+) (\d+) (\d+) (\d+)$")


class Dom0Shell:
    """What the guest steps need of Dom0's shell on one side: Dom0's CPU
    time, the guests' vif counters, attaching to and detaching from a
    guest's console."""

    list_command = "list"
    # The first line of the counters' command's output, if its shell can
    # show a prompt before it (Xenolith's Dom0 shows its prompt again after
    # a guest's mirrored console line).
    traffic_start: re.Pattern | None = None

    def __init__(self, session: Session):
        self.session = session

    def prompt(self) -> None:
        self.session.wait("Dom0 shell prompt", lambda line: False, prompt=True)

    def cpu_seconds(self) -> float:
        """Dom0's CPU seconds from the Domain-0 row of `list` / `xl list`."""
        self.session.send(self.list_command + "\r")
        _, _, row = self.session.wait(f"`{self.list_command}`'s Domain-0 row", lambda line: DOM0_LIST_ROW.search(line))
        self.prompt()
        return float(row.group(1))

    def vif_traffic(self) -> tuple[int, int]:
        """Packets and bytes all guest vifs moved so far, both directions,
        as Dom0's netback counts them."""
        self.session.send(self.traffic_command + "\r")
        if self.traffic_start:
            start = self.traffic_start
            self.session.wait(f"`{self.traffic_command}`'s first line", lambda line: start.search(line))
        packets = octets = 0
        while True:
            _, line, _ = self.session.wait("Dom0's vif counters", lambda line: True, prompt=True)
            if line == "":
                return packets, octets
            found = self.traffic_line.search(line)
            if found:
                packets += int(found.group(1)) + int(found.group(3))
                octets += int(found.group(2)) + int(found.group(4))


class XenolithShell(Dom0Shell):
    traffic_command = "info"
    traffic_start = re.compile(r"^hypervisor\s*: Xenolith")
    traffic_line = XENOLITH_VIF

    def attach(self, name: str, domain: str) -> None:
        self.session.send(f"console {name}\r")
        self.session.wait("attached line", lambda line: f"attached to domain {domain}'s console" in line)
        self.session.send("\r")

    def detach(self) -> None:
        self.session.send("\x1d")  # Ctrl-]
        self.session.send("\r")
        self.prompt()


class XenShell(Dom0Shell):
    list_command = "xl list"
    # Linux's rx_packets on a vif are the guest's transmissions.
    traffic_command = (
        "for v in /sys/class/net/vif*; do s=$v/statistics; echo \"VIF\"\"STAT ${v##*/} $(cat $s/rx_packets) "
        "$(cat $s/rx_bytes) $(cat $s/tx_packets) $(cat $s/tx_bytes)\"; done"
    )
    traffic_line = XEN_VIF

    def attach(self, name: str, domain: str) -> None:
        self.session.send(f"xl console {name}\r")
        time.sleep(1.0)
        self.session.send("\r")

    def detach(self) -> None:
        # xenconsole leaves on a read of Ctrl-] alone: keep it apart from
        # other input (Xen hands Dom0 serial input in batches).
        time.sleep(1.0)
        self.session.send("\x1d")
        time.sleep(1.0)
        self.session.send("\r")
        self.prompt()


def run_net_guests(session: Session, shell: Dom0Shell, args: argparse.Namespace, create, host_port: int):
    """The network guests on either side: CREATE(name) starts a guest with
    its console attached and returns its domain id. The receiver gets a
    lease and an iperf3 server; the sender a lease and pings; then Dom0's
    CPU time and vif counters bracket the sender's two iperf3 transfers.
    Returns the guests' step results and the window's readings."""
    receiver, sender = NET_GUESTS
    results: dict[str, list[str]] = {}
    create(receiver)
    for label, command in net_receiver_commands():
        results[label] = guest_step(session, label, command)
    if results["LEASEB"][:1] != ["0"] or len(results["LEASEB"]) != 2:
        raise RunFailed(f"{receiver} got no DHCP lease: {results['LEASEB']}")
    if results["SERVER"] != ["0"]:
        raise RunFailed(f"{receiver}'s iperf3 server did not start: {results['SERVER']}")
    peer = results["LEASEB"][1]
    shell.detach()
    domain = create(sender)
    for label, command in net_sender_commands(args, peer):
        results[label] = guest_step(session, label, command)
    if results["LEASEA"][:1] != ["0"]:
        raise RunFailed(f"{sender} got no DHCP lease: {results['LEASEA']}")
    shell.detach()
    window = {"cpu_before": shell.cpu_seconds()}
    window["packets_before"], window["bytes_before"] = shell.vif_traffic()
    shell.attach(sender, domain)
    for label, command in net_transfer_commands(args, peer, host_port):
        results[label] = guest_step(session, label, command)
    shell.detach()
    window["cpu_after"] = shell.cpu_seconds()
    window["packets_after"], window["bytes_after"] = shell.vif_traffic()
    return results, window


def run_net_boot(side: Side, args: argparse.Namespace, log_path: Path) -> None:
    """Xenolith's network boot: two Debian guests with a vif each on xenbr0,
    which Dom0 bridges to its virtio NIC on QEMU's user network (see
    run_net_guests)."""
    assert side.net_command is not None
    fatal = re.compile(
        r"(?<!\) )\bdom0: domain \d+ \(net-[ab]\) shut down|^(create|destroy|console) net-[ab]: |"
        r"(?<!\) )\bdom0: .*\b(failed|error|refused|timed out)\b|dom0 crashed|Kernel panic"
    )
    stamps: list[tuple[float, float]] = []

    def observe(now: float, line: str) -> None:
        stamp = HYPERVISOR_STAMP.match(line)
        if stamp:
            stamps.append((float(stamp.group(1)), now))

    def create(name: str) -> str:
        prefix = f"[{name}] "
        session.send(f"create {name}\r")
        _, line, _ = session.wait(f"{name}'s created line", created)
        domain = created(line).group(1)
        session.wait(f"{prefix}{GUEST_SHELL}", lambda line: line.startswith(prefix + GUEST_SHELL))
        shell.attach(name, domain)
        return domain

    host = HostIperf3(Path(args.iperf3_root), Path(args.log_dir))
    out, process, session = start_session(side.net_command, log_path, args.net_timeout, fatal, observe)
    shell = XenolithShell(session)
    try:
        session.wait("Dom0 ready line", lambda line: XENOLITH_READY.search(line))
        shell.prompt()
        results, window = run_net_guests(session, shell, args, create, host.port)
    finally:
        end_session(out, process)
        host.close()
    figures, failures = net_figures(results, clock_rate(stamps), host, window)
    side.record(figures, failures)
    log_net(side, figures, failures, window)


def log_net(side: Side, figures: dict[str, float], failures: dict[str, str], window: dict[str, float]) -> None:
    def show(key: str, unit: str) -> str:
        return f"{figures[key]:,.2f} {unit}" if key in figures else f"({failures.get(key, 'missing')})"

    log(
        f"  {SIDE_TITLES[side.name]} network: ping gateway {show('net_rtt_gateway', 'ms')}, "
        f"ping guest {show('net_rtt_peer', 'ms')}, TCP to the other guest {show('net_tcp_peer', 'MB/s')}, "
        f"TCP to the host {show('net_tcp_out', 'MB/s')}; Dom0 CPU {window['cpu_before']:.1f} → "
        f"{window['cpu_after']:.1f} s over {window['packets_after'] - window['packets_before']:.0f} vif packets "
        f"({figures.get('net_bytes_per_packet', 0):,.0f} bytes each) = {show('net_dom0_cpu', 'µs')} each"
    )


def run_xen_toolstack_boot(side: Side, args: argparse.Namespace, log_path: Path) -> None:
    """The Xen reference with its toolstack (Debian's xen-utils-4.17 in the
    Dom0 initramfs): Dom0 memory with the toolstack up; `xl create -c` of the
    Debian guest (→ first console line, → userspace), Dom0 memory with it
    running, then a second create; the disk guest's fio through blkback from
    the machine's virtio disk; and the two network guests through netback
    and a Linux bridge."""
    assert side.toolstack_command is not None
    fatal = re.compile(
        r"libxl: error|xc: error|Kernel panic|dom0-init: |I/O error|"
        r"is an invalid domain identifier|Parsing config from .* failed"
    )
    # While recovering from a failed `xl create`, libxl's other error lines
    # are expected.
    recovery_fatal = re.compile(r"Kernel panic|dom0-init: ")
    retried: list[str] = []
    # The Dom0 kernel's uptime at the marker lines against their arrival:
    # the rate of the clock the guests read too (Xen's system time).
    stamps: list[tuple[float, float]] = []
    image: list[int] = []

    def observe(now: float, line: str) -> None:
        memory = LINUX_MEMORY.search(line)
        if memory and not image:
            _, code, rwdata, rodata, bss = map(int, memory.groups())
            image.append(code + rwdata + rodata + bss)
        marker = XEN_TOOLSTACK_READY.search(line) or XEN_MEM.search(line)
        if marker:
            uptime = dict(XEN_FIELD.findall(marker.group(1))).get("uptime")
            if uptime:
                stamps.append((float(uptime), now))

    def prompt() -> None:
        shell.prompt()

    def memory() -> float:
        session.send("/bench/mem\r")
        _, _, found = session.wait("Dom0's XEN-MEM line", lambda line: XEN_MEM.search(line) if "uptime=" in line else None)
        return used_kib(dict(XEN_FIELD.findall(found.group(1))), image[0])

    def detach() -> None:
        shell.detach()

    def create(name: str) -> dict:
        try:
            return create_once(name)
        except RunFailed as error:
            if "libxl: error" not in str(error) or retried:
                raise
            # Seen once in the hotplug scripts under TCG: bash's
            # vif-bridge died of SIGSEGV inside libc's malloc. xl then
            # tears the domain down; try once more, and say so.
            retried.append(name)
            log(f"  warning: `xl create` of {name} failed ({error}); destroying it and trying once more")
            session.fatal = recovery_fatal
            session.send(f"xl destroy {name} >/dev/null 2>&1; echo \"RE\"\"TRY=$?\"\r")
            session.wait("the retry marker", lambda line: "RETRY=" in line)
            prompt()
            session.fatal = fatal
            return create_once(name)

    def create_once(name: str) -> dict:
        session.send(f"xl create -c /bench/{name}.cfg\r")
        request_at, _, _ = session.wait(
            f"Dom0's echo of `xl create -c /bench/{name}.cfg`",
            lambda line: line.rstrip().endswith(f"xl create -c /bench/{name}.cfg"),
        )
        first_at, _, _ = session.wait(f"{name}'s first console line", lambda line: GUEST_KERNEL_LINE.search(line))
        init_at, _, _ = session.wait(f"{name}'s {GUEST_INIT}", lambda line: GUEST_INIT in line)
        session.wait(f"{name}'s {GUEST_SHELL}", lambda line: GUEST_SHELL in line)
        return {"console_s": first_at - request_at, "userspace_s": init_at - request_at}

    def guest_bench() -> dict[str, float]:
        # The test guest powers off after its verdict and is destroyed, so
        # `xl create -c` returns to the prompt: the end of its report.
        session.send("xl create -c /bench/test-guest.cfg\r")
        session.wait(
            "Dom0's echo of `xl create -c /bench/test-guest.cfg`",
            lambda line: line.rstrip().endswith("xl create -c /bench/test-guest.cfg"),
        )
        found: dict[str, float] = {}
        failures: list[str] = []
        verdict = None
        while True:
            _, line, _ = session.wait("the test guest's verdict", lambda line: True, prompt=True)
            if line == "":  # the prompt: xl is done
                break
            verdict = read_ring_report(line, found, failures) or verdict
        # A figure the guest could not take on Xen costs only its row.
        for key, why in guest_report_gaps(found, failures, verdict).items():
            log(f"  warning: the test guest on Xen did not measure {key}: {why}")
            side.skipped[key] = f"not measured: {why}"
        return found

    def create_attached(name: str) -> str:
        create(name)
        return name

    host = HostIperf3(Path(args.iperf3_root), Path(args.log_dir))
    figures: dict[str, float] = {}
    results: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="xenolith-bench-disk-") as scratch:
        command = with_nic(side.toolstack_command) + scratch_disk(Path(scratch), args.disk_mib)
        out, process, session = start_session(
            command, log_path, args.xen_toolstack_timeout, fatal, observe, XEN_PROMPT
        )
        # Xen keeps serial input for Dom0 in a 128-byte ring and drops what
        # does not fit while Dom0 is slow to read it (a loaded host): type
        # long lines a little at a time.
        session.typing = (32, 0.25)
        shell = XenShell(session)
        started = time.monotonic()
        try:
            session.wait("Dom0 ready line", lambda line: XEN_READY.search(line))
            ready_at, _, found = session.wait("the toolstack's ready line", lambda line: XEN_TOOLSTACK_READY.search(line))
            if not image:
                raise RunFailed("no 'Memory: ... kernel code' line from Linux before Dom0 ready")
            figures["toolstack_ready"] = (ready_at - started) * 1000.0
            figures["memory_guests_0"] = used_kib(dict(XEN_FIELD.findall(found.group(1))), image[0])
            prompt()
            # The Debian guest, as in Xenolith's Debian boot.
            cold = create(args.debian_name)
            detach()
            figures["memory_guests_1"] = memory()
            session.send(f"xl destroy {args.debian_name}\r")
            prompt()
            warm = create(args.debian_name)
            detach()
            session.send(f"xl destroy {args.debian_name}\r")
            prompt()
            figures.update({
                "create_console": cold["console_s"], "create_userspace": cold["userspace_s"],
                "create_cached_userspace": warm["userspace_s"],
            })  # fmt: skip
            # The disk guest, as in Xenolith's disk boot.
            create(args.disk_name)
            detach()
            dom0_before = shell.cpu_seconds()
            shell.attach(args.disk_name, args.disk_name)
            for label, text in disk_commands(args):
                results[label] = guest_step(session, label, text)
            detach()
            dom0_after = shell.cpu_seconds()
            session.send(f"xl destroy {args.disk_name}\r")
            prompt()
            # The network guests, as in Xenolith's network boot.
            net_results, window = run_net_guests(session, shell, args, create_attached, host.port)
            figures["memory_guests_2_net"] = memory()
            # The test guest's figures, last: a failure here loses only them.
            guest: dict[str, float] = {}
            try:
                guest = guest_bench()
            except RunFailed as error:
                guest_error = str(error)
                log(f"  warning: the test guest on Xen: {guest_error}")
                for key, _, _ in GUEST_FIGURES.values():
                    side.skipped[key] = f"not measured: {guest_error}"
            figures.update(guest)
        finally:
            end_session(out, process)
            host.close()
    clock = clock_rate(stamps)
    disk, disk_failures = disk_figures(results, clock, dom0_before, dom0_after)
    net, net_failures = net_figures(net_results, clock, host, window)
    side.record(figures | disk | net, disk_failures | net_failures)
    log(
        f"  {SIDE_TITLES[side.name]} toolstack boot: toolstack up {figures['toolstack_ready']:,.0f} ms, "
        f"Dom0 {figures['memory_guests_0']:,.0f} KiB with 0 guests, {figures['memory_guests_1']:,.0f} KiB with "
        f"the Debian guest; xl create -c → first console line {cold['console_s']:.2f} s, → userspace "
        f"{cold['userspace_s']:.2f} s, again {warm['userspace_s']:.2f} s; Dom0 clock ÷ host clock {clock:.3f}"
    )
    log_disk(side, disk, disk_failures, dom0_before, dom0_after, clock)
    log_net(side, net, net_failures, window)
    if guest:
        log(f"  {SIDE_TITLES[side.name]} test guest: " + ", ".join(
            f"{key} {value:,.1f}" for key, value in guest.items()
        ))


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


NO_CYCLES = "not measured: `xl create -p` + `xl destroy` would time the toolstack too"
# Rows the Xen toolstack boot does not measure.
NO_UNPAUSE = "not measured: `xl create` prints nothing when it unpauses the guest"
NO_XL_ROW = "not measured in the toolstack boot"
XL_CACHE = "; xl has no kernel cache: the second `xl create` of the same files"

# The boots `--only` can name: the two plain boots, Xenolith's guest,
# Debian, ten-guest, disk and network boots, and the Xen toolstack boot.
BOOTS = ("plain", "guest", "debian", "ten", "disk", "net", "xen-toolstack")

MEASURED = [
    Figure("size_hypervisor", "image size: hypervisor", "KiB", 0),
    Figure("size_dom0", "image size: Dom0 kernel", "KiB", 0),
    Figure("size_initrd", "image size: Dom0 initrd/root (busybox only)", "KiB", 0),
    Figure("size_total", "image size: total (busybox-only root)", "KiB", 0),
    Figure("size_toolstack", "image size: Dom0 initrd/root with the toolstack (Xen: xl, oxenstored, libraries, modules)", "KiB", 0),
    Figure("size_total_toolstack", "image size: total with the toolstack", "KiB", 0),
    Figure("memory", "Dom0 memory in use after boot", "KiB", 0),
    Figure("banner", "power-on → hypervisor's first console line", "ms", 0),
    Figure("ready", "power-on → Dom0 ready", "ms", 0),
    Figure("toolstack_ready", "power-on → toolstack up (Xen: oxenstored, xen-init-dom0, xenconsoled, bridge; Xenolith: Dom0's shell prompt)", "ms", 0),
    Figure("idle", "host CPU, idle appliance", "% of a core", 2),
    Figure("create_destroy", "domain create+destroy (Dom0, mean)", "ms", 2, NO_CYCLES),
    Figure("hypercall", "hypercall round trip (guest, xen_version)", "µs", 1),
    Figure("evtchn_send", "event channel send → pending (guest, own IPI port)", "µs", 1),
    Figure("grant_map", "grant map+unmap (guest, own grant)", "µs", 1),
    Figure("grant_copy", "grant copy, 4 KiB per hypercall (guest)", "MB/s", 0),
    Figure("timer_immediate", "timer in the past → VIRQ_TIMER pending (guest)", "µs", 1),
    Figure("timer_wakeup", "timer deadline → polling guest running again", "µs", 1),
    Figure("create_first_instruction", "create request → guest's first instruction (Debian guest, 128 MiB)", "ms", 0, NO_UNPAUSE),
    Figure("create_decompress", "… of which decompressing the bzImage (XZ)", "ms", 0, NO_UNPAUSE),
    Figure("create_clock", "hypervisor clock ÷ host clock in that boot (TSC calibration check)", "×", 3, NO_XL_ROW),
    Figure("create_echo", "typing `create` → Dom0 takes the line (serial input)", "ms", 0, NO_XL_ROW),
    Figure("create_console", "create request → guest's first console line", "s", 2),
    Figure("create_userspace", "create request → guest userspace (init started)", "s", 2),
    Figure("create_cached_first_instruction", "create request → guest's first instruction, again (Xenolith: kernel cached)", "ms", 0, NO_UNPAUSE),
    Figure("create_cached_userspace", "create request → guest userspace, again (Xenolith: kernel cached; Xen: same files again)", "s", 2),
    Figure("memory_guests_0", "Dom0 memory, toolstack up, 0 guests", "KiB", 0),
    Figure("memory_guests_1_created", "Dom0 memory, 1 Debian guest, at its creation (with the kernel cache)", "KiB", 0, NO_XL_ROW),
    Figure("memory_guests_1", "Dom0 memory, 1 Debian guest running (its shell up; Xenolith: with the kernel cache)", "KiB", 0),
    Figure("memory_guests_10", "Dom0 memory, 10 guests (test guest, 64 MiB each), at the 10th creation", "KiB", 0, NO_XL_ROW),
    # The disk boots: the Debian guest's fio on xvda, served by Dom0's
    # blkback from the machine's virtio disk.
    Figure("disk_write", "block MB/s: sequential write (guest fio, 1 MiB O_DIRECT, queue depth 1)", "MB/s", 1),
    Figure("disk_read", "block MB/s: sequential read (guest fio, 1 MiB O_DIRECT, queue depth 1)", "MB/s", 1),
    Figure("disk_randread_1", "block IOPS: 4 KiB random reads (guest fio, O_DIRECT, libaio, queue depth 1)", "IOPS", 0),
    Figure("disk_randread_32", "block IOPS: 4 KiB random reads, queue depth 32", "IOPS", 0),
    Figure("disk_randwrite_1", "block IOPS: 4 KiB random writes (guest fio, O_DIRECT, libaio, queue depth 1)", "IOPS", 0),
    Figure("disk_randwrite_32", "block IOPS: 4 KiB random writes, queue depth 32", "IOPS", 0),
    Figure("disk_dom0_cpu", "Dom0 CPU time per I/O (guest block request, from `list` / `xl list`)", "µs", 0),
    # The network boots: two guests with a vif each, bridged to the
    # machine's NIC on QEMU's user network.
    Figure("net_rtt_gateway", "network RTT: guest → gateway (ping 10.0.2.2, QEMU's user network)", "ms", 2),
    Figure("net_rtt_peer", "network RTT: guest ↔ guest (ping across the bridge)", "ms", 2),
    Figure("net_tcp_out", "network TCP: guest → outside (iperf3 to a server on the host)", "MB/s", 2),
    Figure("net_tcp_peer", "network TCP: guest → guest (iperf3 across the bridge)", "MB/s", 2),
    Figure("net_dom0_cpu", "Dom0 CPU time per network packet (vif packets both ways, during the two iperf3 runs)", "µs", 0),
]

# The figures of the Xen toolstack boot.
XEN_TOOLSTACK_FIGURES = (
    "toolstack_ready", "create_console", "create_userspace", "create_cached_userspace", "memory_guests_0",
    "memory_guests_1", *(job.key for job in FIO_JOBS), "disk_dom0_cpu",
    "net_rtt_gateway", "net_rtt_peer", "net_tcp_out", "net_tcp_peer", "net_dom0_cpu",
    # The test guest, reporting on its PV console ring (`xl create -c`).
    "hypercall", "evtchn_send", "grant_map", "grant_copy", "timer_immediate", "timer_wakeup",
)

# Figures the issues ask for whose capability does not exist on both sides yet,
# with what is missing.
NOT_YET: list[tuple[str, str]] = [
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


def side_cell(side: Side, figure: Figure) -> str:
    """SIDE's text for FIGURE: its median and range, with the boots that
    failed to measure it, or why it has no value."""
    values = side.results.get(figure.key)
    why, failures = side.failed.get(figure.key, ("", 0))
    if values:
        text = cell(values, figure)
        return text + (f" (failed in {failures} boot(s): {why})" if failures else "")
    if failures:
        return f"failed: {why}"
    if figure.key in side.skipped:
        return side.skipped[figure.key]
    if side.name == XEN and figure.xen_missing:
        return f"not yet measurable ({figure.xen_missing})"
    return "not yet measurable"


def table(sides: dict[str, Side], only: set[str] | None = None) -> list[str]:
    """The report's rows; with ONLY (figure keys), just those figures."""
    xen, xenolith = sides[XEN], sides[XENOLITH]
    lines = [
        f"| figure | {SIDE_TITLES[XEN]} | {SIDE_TITLES[XENOLITH]} | ratio Xen ÷ Xenolith |",
        "|---|---|---|---|",
    ]
    for figure in MEASURED:
        if only is not None and figure.key not in only:
            continue
        a, b = xen.results.get(figure.key), xenolith.results.get(figure.key)
        right = side_cell(xenolith, figure)
        if figure.key in ("size_initrd", "size_toolstack") and a and b and max(b) == 0:
            right = "none (0 KiB)"
        if a and b and max(b) > 0:
            last = ratio(a, b)
        elif any(figure.key in side.skipped or figure.key in side.failed for side in (xen, xenolith)) or a and b:
            last = "—"
        else:
            last = "not yet measurable"
        lines.append(f"| {figure.title} | {side_cell(xen, figure)} | {right} | {last} |")
    for title, why in NOT_YET if only is None else ():
        lines.append(f"| {title} | not yet measurable ({why}) | not yet measurable | — |")
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
            if line.split()[1:2] != ["sha256"]  # the scripts' checksums
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
        "Guest tools: " + guest_tools(args),
        f"Serial logs: {args.log_dir}",
    ]


def guest_tools(args: argparse.Namespace) -> str:
    """fio's and iperf3's package versions (scripts/bench.d/guest-tools'
    versions file, beside the iperf3 root)."""
    try:
        lines = Path(args.iperf3_root).parent.joinpath("versions").read_text().splitlines()
    except (OSError, TypeError):
        return "(versions unknown)"
    return "; ".join(line for line in lines if line.split()[:1] in (["fio"], ["iperf3"])) or "(versions unknown)"


def sizes(side: Side, toolstack: Path | None) -> None:
    """Image sizes; TOOLSTACK is the Xen Dom0 initramfs with the toolstack
    (Xenolith's toolstack is in its Dom0 image)."""
    total = 0
    for role in ("hypervisor", "dom0", "initrd"):
        path = side.files.get(role)
        size = path.stat().st_size if path else 0
        key = "size_" + role
        side.results[key] = [size / 1024]
        total += size
    side.results["size_total"] = [total / 1024]
    if side.name == XEN and toolstack is None:
        return
    with_toolstack = toolstack.stat().st_size if side.name == XEN and toolstack else 0
    initrd = side.files.get("initrd")
    base = total - (initrd.stat().st_size if initrd else 0)
    side.results["size_toolstack"] = [with_toolstack / 1024]
    side.results["size_total_toolstack"] = [(base + with_toolstack) / 1024]


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
    parser.add_argument("--fio-runtime", type=int, default=10, help="seconds each of the disk guest's fio jobs runs")
    parser.add_argument("--disk-timeout", type=float, default=300.0, help="seconds for a whole disk boot")
    parser.add_argument(
        "--net-iso",
        help="Xenolith ISO whose Dom0 defines the network guests net-a and net-b with a vif on xenbr0 "
        "(scripts/bench makes it); the harness adds the NIC",
    )
    parser.add_argument("--net-seconds", type=int, default=10, help="seconds each iperf3 transfer runs")
    parser.add_argument(
        "--iperf3-root",
        help="scripts/bench.d/guest-tools' unpacked iperf3 root: the host's iperf3 server (needed with --net-iso "
        "or --xen-bench-initrd)",
    )
    parser.add_argument("--net-pings", type=int, default=20, help="pings of each RTT figure")
    parser.add_argument("--net-timeout", type=float, default=360.0, help="seconds for a whole network boot")
    parser.add_argument(
        "--xen-toolstack-initrd",
        help="the Xen Dom0 initramfs with the toolstack alone (its size is a figure)",
    )
    parser.add_argument(
        "--xen-bench-initrd",
        help="the Xen Dom0 initramfs with the toolstack and the bench guests' files under /bench "
        "(scripts/bench makes it); without it the Xen toolstack boot is skipped",
    )
    parser.add_argument("--xen-toolstack-timeout", type=float, default=1200.0, help="seconds for the whole Xen toolstack boot")
    parser.add_argument(
        "--only",
        help="comma-separated boots to make, of " + ", ".join(BOOTS) + "; the report has only their figures",
    )
    args = parser.parse_args()
    # A SIGTERM (a timeout around the whole script) unwinds like Ctrl-C, so
    # the QEMU being run is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    only = None
    if args.only is not None:
        only = set(args.only.split(","))
        unknown = only - set(BOOTS)
        if unknown:
            parser.error(f"--only: no boot named {', '.join(sorted(unknown))} (give {', '.join(BOOTS)})")

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
    if (args.net_iso or args.xen_bench_initrd) and not (
        args.iperf3_root and Path(args.iperf3_root, "usr/bin/iperf3").is_file()
    ):
        parser.error("the network figures need --iperf3-root with usr/bin/iperf3 (scripts/bench.d/guest-tools)")
    if args.net_iso:
        if not Path(args.net_iso).is_file():
            raise SystemExit(f"bench: error: {args.net_iso} missing")
        sides[XENOLITH].net_command = with_nic(machine.qemu_base() + ["-cdrom", args.net_iso, "-boot", "d"])
    if args.xen_bench_initrd:
        sides[XEN].toolstack_command = xen_command(machine, Path(args.xen_dir), Path(args.xen_bench_initrd))
    else:
        why = "skipped: the Xen toolstack boot is not run with --quick (add --xen-toolstack)" if args.quick \
            else "skipped: no --xen-bench-initrd"
        sides[XEN].skipped = {key: why for key in XEN_TOOLSTACK_FIGURES}
    toolstack = Path(args.xen_toolstack_initrd) if args.xen_toolstack_initrd else None
    for side in sides.values():
        paths = list(side.files.values())
        if side.toolstack_command:
            paths.append(Path(args.xen_bench_initrd))
        if side.name == XEN and toolstack:
            paths.append(toolstack)
        for path in paths:
            if not path.is_file():
                raise SystemExit(f"bench: error: {path} missing")
        sizes(side, toolstack)

    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    before = {side.name: set(side.results) for side in sides.values()}
    started = time.monotonic()
    for run in range(1, args.runs + 1):
        log(f"run {run}/{args.runs}")
        xenolith, xen = sides[XENOLITH], sides[XEN]
        boots = [
            (SIDE_TITLES[XENOLITH], f"{XENOLITH}-{run}.log", lambda path: run_once(xenolith, machine, args, path)),
            (SIDE_TITLES[XEN], f"{XEN}-{run}.log", lambda path: run_once(xen, machine, args, path)),
        ]
        names = ["plain", "plain"]
        if xenolith.guest_command:
            guests_title = f"{SIDE_TITLES[XENOLITH]} guest boot"
            names.append("guest")
            boots.append((guests_title, f"{XENOLITH}-guests-{run}.log", lambda path: run_guest_bench(xenolith, args, path)))
        if xenolith.debian_command:
            names.append("debian")
            boots.append((f"{SIDE_TITLES[XENOLITH]} Debian boot", f"{XENOLITH}-debian-{run}.log",
                          lambda path: run_debian_boot(xenolith, args, path)))
        if xenolith.ten_command:
            names.append("ten")
            boots.append((f"{SIDE_TITLES[XENOLITH]} ten-guest boot", f"{XENOLITH}-ten-{run}.log",
                          lambda path: run_ten_boot(xenolith, args, path)))
        if xenolith.disk_command:
            names.append("disk")
            boots.append((f"{SIDE_TITLES[XENOLITH]} disk boot", f"{XENOLITH}-disk-{run}.log",
                          lambda path: run_disk_boot(xenolith, args, path)))
        if xenolith.net_command:
            names.append("net")
            boots.append((f"{SIDE_TITLES[XENOLITH]} network boot", f"{XENOLITH}-net-{run}.log",
                          lambda path: run_net_boot(xenolith, args, path)))
        if xen.toolstack_command:
            names.append("xen-toolstack")
            boots.append((f"{SIDE_TITLES[XEN]} toolstack boot", f"{XEN}-toolstack-{run}.log",
                          lambda path: run_xen_toolstack_boot(xen, args, path)))
        for name, (title, log_name, boot) in zip(names, boots):
            if only is not None and name not in only:
                continue
            log_path = log_dir / log_name
            try:
                boot(log_path)
            except RunFailed as error:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                print("\n".join("    " + line for line in tail), file=sys.stderr)
                log(f"error: {title}, run {run}: {error} (serial log: {log_path})")
                return 1
    log(f"all runs done in {time.monotonic() - started:.0f} s")

    figures = None
    if only is not None:
        # Only what these boots measured (the image sizes are always known).
        figures = {
            key for side in sides.values() for key in (*side.results, *side.failed) if key not in before[side.name]
        }
    report = header(args, machine, load, os.getloadavg()) + [""] + table(sides, figures)
    text = "\n".join(report) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
