# shellcheck shell=bash
# Shared helpers for Xenolith's scripts: source it from a script, don't run it.
#
# Sets XENOLITH_ROOT (the repository), XENOLITH_IMAGE_DIR (boot images), the
# QEMU defaults every script uses, and small functions for messages and
# checking that the build and run tools are present.

XENOLITH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
XENOLITH_IMAGE_DIR=${XENOLITH_IMAGE_DIR:-$XENOLITH_ROOT/target/image}
XENOLITH_TARGET=x86_64-unknown-none

# A rustup installed for this user but not on PATH (a fresh login shell, CI
# without a profile) is still the one to use.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    export PATH
fi

# QEMU defaults for every boot of the appliance (see README.md). Callers add
# the console plumbing (-nographic, or -display none -serial ...).
# shellcheck disable=SC2034,SC2054 # used by the scripts that source this file
XENOLITH_QEMU_DEFAULTS=(
    -accel tcg
    -device isa-debug-exit,iobase=0xf4,iosize=0x04
    -no-reboot
)
# shellcheck disable=SC2034
XENOLITH_QEMU_CPU=EPYC
# shellcheck disable=SC2034
XENOLITH_QEMU_MEMORY=1G
# shellcheck disable=SC2034
XENOLITH_QEMU_CPUS=1

# The script's name, for messages.
XENOLITH_SCRIPT=$(basename "$0")

# info MESSAGE...: a progress line on stderr.
info() {
    printf '%s: %s\n' "$XENOLITH_SCRIPT" "$*" >&2
}

# die MESSAGE...: an error line on stderr, then exit 1.
die() {
    printf '%s: error: %s\n' "$XENOLITH_SCRIPT" "$*" >&2
    exit 1
}

# banner TEXT: a visible step header on stdout.
banner() {
    printf '\n==== %s ====\n' "$*"
}

# Tools the build and run scripts need, each as "check package": the check is
# a command on PATH or an absolute path that must exist; the package is the
# Debian package that provides it.
# shellcheck disable=SC2034
XENOLITH_TOOLS=(
    "qemu-system-x86_64 qemu-system-x86"
    "grub-mkrescue grub-common"
    "/usr/lib/grub/i386-pc/moddep.lst grub-pc-bin"
    "xorriso xorriso"
    "mformat mtools"
    "objcopy binutils"
    # The bzImage tests compress their inputs with the tools Linux uses.
    "xz xz-utils"
    "gzip gzip"
    "lz4 lz4"
    "zstd zstd"
    # scripts/fetch-guest and scripts/bench build initramfs images.
    "cpio cpio"
    # The disk-formats integration tests make and check images with qemu-img.
    "qemu-img qemu-utils"
)

# missing_packages: print the Debian packages whose tool is missing, one a line.
missing_packages() {
    local entry check package
    for entry in "${XENOLITH_TOOLS[@]}"; do
        check=${entry%% *}
        package=${entry#* }
        if [[ $check == /* ]]; then
            [[ -e $check ]] || printf '%s\n' "$package"
        else
            command -v "$check" >/dev/null 2>&1 || printf '%s\n' "$package"
        fi
    done
}

# toolchain_channel: the Rust toolchain pinned in rust-toolchain.toml.
toolchain_channel() {
    sed -n 's/^[[:space:]]*channel[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' \
        "$XENOLITH_ROOT/rust-toolchain.toml"
}

# setup_needed: succeed when scripts/setup has something to do. Cheap: looks
# at tools only, never at the network.
setup_needed() {
    [[ -n $(missing_packages) ]] && return 0
    command -v cargo >/dev/null 2>&1 || return 0
    command -v rustup >/dev/null 2>&1 || return 0
    local channel
    channel=$(toolchain_channel)
    rustup toolchain list 2>/dev/null | grep -q "^${channel}-" || return 0
    rustup "+$channel" target list --installed 2>/dev/null \
        | grep -qx "$XENOLITH_TARGET" || return 0
    return 1
}

# ensure_setup: run scripts/setup when a tool is missing.
ensure_setup() {
    if setup_needed; then
        info "tools missing; running scripts/setup"
        "$XENOLITH_ROOT/scripts/setup"
    fi
}

# elf_or_die FILE: FILE must be an ELF image (32- or 64-bit).
elf_or_die() {
    local magic
    [[ -f $1 ]] || die "$1: no such file"
    magic=$(od -An -tx1 -N4 "$1" | tr -d ' \n')
    [[ $magic == 7f454c46 ]] || die "$1: not an ELF image"
}
