# shellcheck shell=bash
# Debian package helpers for scripts/bench.d/xen-reference and
# scripts/bench.d/guest-tools: source it after scripts/lib.sh, with deb_dir
# set to the .deb cache (target/bench/debs).

: "${deb_dir:?set deb_dir before sourcing debs.sh}"

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
fi

# as_root COMMAND...: run COMMAND as root, through sudo when needed.
as_root() {
    if [[ ${#sudo[@]} -gt 0 ]] && ! command -v sudo >/dev/null 2>&1; then
        die "need root for '$*' and there is no sudo"
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "$@"
}

apt_updated=0
# apt_update: refresh the package lists once per run.
apt_update() {
    [[ $apt_updated -eq 1 ]] && return 0
    apt_updated=1
    info "apt-get update"
    as_root apt-get update -q >/dev/null 2>&1 \
        || info "warning: apt-get update failed; using the package lists there are"
}

# candidate PACKAGE: the version apt would install, or nothing.
candidate() {
    apt-cache policy "$1" 2>/dev/null \
        | awk '$1 == "Candidate:" && $2 != "(none)" { print $2; exit }'
}

# candidates PACKAGE...: "PACKAGE VERSION" for each PACKAGE apt has a
# candidate for, one a line (one apt-cache call for them all).
candidates() {
    apt-cache policy "$@" 2>/dev/null \
        | awk '/^[^ ].*:$/ { package = substr($0, 1, length($0) - 1) }
               $1 == "Candidate:" && $2 != "(none)" { print package, $2 }'
}

# package_specs ARRAY PACKAGE...: set the array named ARRAY to
# PACKAGE=VERSION for each PACKAGE, running apt-get update once when apt
# knows no candidate for one; dies when it still does not.
package_specs() {
    local -n specs=$1
    local package known version
    shift
    known=$(candidates "$@")
    if [[ $(wc -l <<<"$known") -lt $# ]]; then
        apt_update
        known=$(candidates "$@")
    fi
    specs=()
    for package in "$@"; do
        version=$(awk -v p="$package" '$1 == p { print $2; exit }' <<<"$known")
        [[ -n $version ]] || die "apt has no candidate for $package"
        specs+=("$package=$version")
    done
}

# deb_file PACKAGE VERSION: the cached .deb of PACKAGE at VERSION, if any.
deb_file() {
    local file
    for file in "$deb_dir/$1"_*.deb; do
        [[ -f $file ]] || continue
        if [[ $(dpkg-deb -f "$file" Package Version | tr '\n' ' ') == "Package: $1 Version: $2 " ]]; then
            printf '%s\n' "$file"
            return 0
        fi
    done
    return 1
}

# download_debs SPEC...: apt-get download each PACKAGE=VERSION the cache
# lacks into deb_dir.
download_debs() {
    local spec missing=() apt_log
    mkdir -p "$deb_dir"
    for spec in $(printf '%s\n' "$@" | LC_ALL=C sort -u); do
        deb_file "${spec%%=*}" "${spec#*=}" >/dev/null || missing+=("$spec")
    done
    [[ ${#missing[@]} -gt 0 ]] || return 0
    info "downloading ${#missing[@]} package(s): ${missing[*]%%=*}"
    apt_log=$(mktemp "${TMPDIR:-/tmp}/xenolith-bench-apt.XXXXXX")
    # apt's download sandbox user cannot write here; the warning is harmless.
    if ! (cd "$deb_dir" && apt-get download -q "${missing[@]}") >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        die "apt-get download failed"
    fi
    rm -f "$apt_log"
    for spec in "${missing[@]}"; do
        deb_file "${spec%%=*}" "${spec#*=}" >/dev/null || die "apt-get download left no .deb for $spec"
    done
}

# in_root ROOT PATH: PATH (absolute inside ROOT, or relative to ROOT) with
# every symbolic link resolved inside ROOT, relative to ROOT; each link on
# the way is printed first, one a line. Prints nothing past a dangling link.
in_root() {
    local root=$1 path=${2#/} hops=0 target
    while [[ -L $root/$path ]]; do
        printf '%s\n' "$path"
        target=$(readlink "$root/$path")
        if [[ $target == /* ]]; then
            path=${target#/}
        else
            path=$(dirname "$path")/$target
        fi
        path=$(realpath -m -s --relative-to=/ "/$path")
        hops=$((hops + 1))
        [[ $hops -lt 40 ]] || return 0
    done
    [[ -e $root/$path ]] && printf '%s\n' "$path"
    return 0
}

# library_closure ROOT PROGRAM...: every file the dynamic loader opens to
# start each PROGRAM (paths relative to ROOT): the program, its interpreter,
# the shared libraries of readelf's NEEDED entries, recursively, found in
# their RUNPATH and then in Debian's library directories, and the symbolic
# links on the way. Dies naming the first library ROOT lacks.
library_closure() {
    local root=$1
    shift
    command -v readelf >/dev/null 2>&1 || die "needs readelf (binutils) to check the libraries"
    declare -A closure_seen=()
    local program
    for program in "$@"; do
        [[ -f $root/$program ]] || die "no $program in the unpacked packages"
        _library_closure_walk "$root" "$program"
    done
    printf '%s\n' "${!closure_seen[@]}" | LC_ALL=C sort
}

_library_closure_walk() {
    local root=$1 file=$2 needed dir found line interpreter
    local -a dirs=()
    [[ -n ${closure_seen[$file]:-} ]] && return 0
    closure_seen[$file]=1
    interpreter=$(readelf -l "$root/$file" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
    if [[ -n $interpreter ]]; then
        found=$(in_root "$root" "$interpreter")
        [[ -n $found ]] || die "$file needs the interpreter $interpreter, which is not in the root"
        while read -r line; do closure_seen[$line]=1; done <<<"$found"
    fi
    line=$(readelf -d "$root/$file" 2>/dev/null | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
    [[ -n $line ]] && IFS=: read -r -a dirs <<<"$line"
    dirs+=(/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu)
    while read -r needed; do
        found=
        for dir in "${dirs[@]}"; do
            found=$(in_root "$root" "$dir/$needed")
            [[ -n $found ]] && break
        done
        [[ -n $found ]] || die "$file needs $needed, which no package in the root provides"
        while read -r line; do
            [[ -L $root/$line ]] && closure_seen[$line]=1
        done <<<"$found"
        _library_closure_walk "$root" "$(tail -n 1 <<<"$found")"
    done < <(readelf -d "$root/$file" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
}
