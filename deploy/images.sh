#!/usr/bin/env bash
# Builds every image the deploy kit uses, on a machine that cannot pull from
# any registry: the base images are made here from Debian packages.
#
#   deploy/images.sh            # create what is missing, then build parapet:latest
#   deploy/images.sh --no-parapet   # only the base images
#   deploy/images.sh --force        # remake the base images too
#
# Images (each made only when missing; idempotent):
#   parapet/debian:bookworm          debootstrap --variant=minbase + docker import,
#                                    trimmed like debian:bookworm-slim
#   parapet/rust:bookworm-toolchain  base + cmake/gcc/make/perl/pkg-config +
#                                    the host's Rust toolchain (rustc --print sysroot)
#   parapet/rust:bookworm            toolchain + Cargo.lock's crates vendored on the
#                                    host, cargo set offline (remade when Cargo.lock
#                                    or the host toolchain changes)
#   parapet/origin:latest            base + busybox httpd under tini (example origin)
#   parapet/prometheus:latest        base + Debian's prometheus (and promtool)
#   parapet/loadgen:latest           base + Debian's python3 (load generators on
#                                    the stacks' networks, deploy/fleet)
#   (these three are remade when their Dockerfile or its files under images/
#   change: label org.parapet.context-sha256)
#   parapet:latest                   the top-level Dockerfile, unchanged, with
#                                    BUILDER_IMAGE=parapet/rust:bookworm and
#                                    RUNTIME_IMAGE=parapet/debian:bookworm
#
# Needs: root (debootstrap), debootstrap, docker, and for the builder the
# host's cargo/rustc (crates come from the host's cargo, i.e. crates.io or its
# cache). Environment: DEBIAN_MIRROR, PARAPET_IMAGES_WORKDIR (scratch space,
# default /var/tmp/parapet-images), NICE (default "nice -n 19").
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
work=${PARAPET_IMAGES_WORKDIR:-/var/tmp/parapet-images}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
read -r -a nice <<<"${NICE:-nice -n 19}"

base=parapet/debian:bookworm
toolchain_img=parapet/rust:bookworm-toolchain
builder=parapet/rust:bookworm
origin=parapet/origin:latest
prom=parapet/prometheus:latest
loadgen=parapet/loadgen:latest
parapet=parapet:latest

build_parapet=1
force=0
for a in "$@"; do
  case "$a" in
    --no-parapet) build_parapet=0 ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "images.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done

say() { printf '[images] %s\n' "$*" >&2; }
# Runs a command with its output in $work/LOG; shows the tail if it fails.
logged() { # LOG command...
  local log="$work/$1"; shift
  "$@" >"$log" 2>&1 || { tail -40 "$log" >&2; say "FAILED: $* (log: $log)"; exit 1; }
}
have() { docker image inspect "$1" >/dev/null 2>&1; }
label() { docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

mkdir -p "$work"

# --- parapet/debian:bookworm -------------------------------------------------
make_base() {
  if have "$base" && [ "$force" = 0 ]; then
    say "$base: present"
    return
  fi
  command -v debootstrap >/dev/null || { say "debootstrap missing: apt-get install debootstrap"; exit 1; }
  local root="$work/rootfs"
  rm -rf "$root"
  say "$base: debootstrap --variant=minbase $suite from $mirror (about a minute)"
  "${nice[@]}" debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # What debuerreotype does for the official images: no services started by
  # package scripts, no .deb kept, and (for -slim) no docs, man pages, locales.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$root/etc/apt/apt.conf.d/docker-no-recommends"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{man,groff,info,locale,lintian,linda}/*
  cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} $suite-security main
EOF
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
         "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/root/.bash_history
  : >"$root/etc/resolv.conf"; : >"$root/etc/hostname"
  say "$base: docker import"
  tar --numeric-owner -C "$root" -c . \
    | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        - "$base" >/dev/null
  rm -rf "$root"
  say "$base: $(docker image inspect -f '{{.Size}}' "$base" | awk '{printf "%.0f MB", $1/1e6}')"
}

# --- parapet/rust:bookworm-toolchain -----------------------------------------
make_toolchain() {
  local sysroot version ctx
  sysroot=$(rustc --print sysroot)
  version=$(rustc --version)
  if have "$toolchain_img" && [ "$(label "$toolchain_img" org.parapet.rustc)" = "$version" ] && [ "$force" = 0 ]; then
    say "$toolchain_img: present ($version)"
    return
  fi
  ctx="$work/toolchain-ctx"
  rm -rf "$ctx"; mkdir -p "$ctx/rust/bin" "$ctx/rust/lib/rustlib"
  say "$toolchain_img: copying $version from $sysroot (cargo, rustc, rustdoc, std for x86_64 linux)"
  cp -a "$sysroot"/bin/{cargo,rustc,rustdoc} "$ctx/rust/bin/"
  cp -a "$sysroot"/lib/*.so* "$ctx/rust/lib/"
  cp -a "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu" "$ctx/rust/lib/rustlib/"
  cp "$here/images/rust-toolchain.Dockerfile" "$ctx/Dockerfile"
  say "$toolchain_img: docker build"
  logged toolchain-build.log "${nice[@]}" docker build --build-arg "BASE_IMAGE=$base" \
    --label "org.parapet.rustc=$version" -t "$toolchain_img" "$ctx"
  rm -rf "$ctx"
}

# --- parapet/rust:bookworm ---------------------------------------------------
make_builder() {
  local sum version ctx
  sum=$(cat "$repo/Cargo.toml" "$repo/Cargo.lock" | sha256sum | cut -c1-64)
  version=$(rustc --version)
  if have "$builder" && [ "$(label "$builder" org.parapet.cargo-lock-sha256)" = "$sum" ] \
     && [ "$(label "$builder" org.parapet.rustc)" = "$version" ]; then
    say "$builder: present (crates of this Cargo.lock)"
    return
  fi
  ctx="$work/vendor-ctx"
  rm -rf "$ctx"; mkdir -p "$ctx/pkg/src"
  say "$builder: vendoring the crates of Cargo.lock with the host's cargo"
  # A copy of the manifest and lock file, so that nothing in the repo (or its
  # target dir) is touched; --locked refuses to change the lock file.
  cp "$repo/Cargo.toml" "$repo/Cargo.lock" "$ctx/pkg/"
  : >"$ctx/pkg/src/lib.rs"; echo 'fn main() {}' >"$ctx/pkg/src/main.rs"
  (cd "$ctx/pkg" && "${nice[@]}" cargo vendor --locked --versioned-dirs "$ctx/vendor") \
    >/dev/null 2>"$work/vendor.log" || { tail -20 "$work/vendor.log" >&2; exit 1; }
  cat >"$ctx/config.toml" <<'EOF'
# Written by deploy/images.sh: crates come from the vendored copy, never the network.
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "/usr/local/cargo/vendor"

[net]
offline = true
EOF
  cp "$here/images/rust-vendor.Dockerfile" "$ctx/Dockerfile"
  rm -rf "$ctx/pkg"
  say "$builder: docker build ($(du -sh "$ctx/vendor" | cut -f1) of crates)"
  logged builder-build.log "${nice[@]}" docker build --build-arg "TOOLCHAIN_IMAGE=$toolchain_img" \
    --build-arg "CARGO_LOCK_SHA256=$sum" --label "org.parapet.rustc=$version" -t "$builder" "$ctx"
  rm -rf "$ctx"
}

# --- parapet/origin, parapet/prometheus, parapet/loadgen ---------------------
# The Dockerfile and the files under images/NAME/ (origin/ for origin.Dockerfile):
# an image made from other versions of them is remade.
context_sum() { # dockerfile
  local dir="$here/images/${1%.Dockerfile}"
  (cd "$here/images" && { echo "$1"; if [ -d "$dir" ]; then find "${1%.Dockerfile}" -type f | LC_ALL=C sort; fi; } \
    | while read -r f; do printf '%s %s\n' "$f" "$(sha256sum <"$f" | cut -c1-64)"; done) \
    | sha256sum | cut -c1-64
}
make_from_base() { # image dockerfile
  local sum
  sum=$(context_sum "$2")
  if have "$1" && [ "$force" = 0 ] && [ "$(label "$1" org.parapet.context-sha256)" = "$sum" ]; then
    say "$1: present"
    return
  fi
  if have "$1" && [ "$force" = 0 ]; then
    if [ -z "$(label "$1" org.parapet.context-sha256)" ]; then
      say "$1: made by an older images.sh (no context label): remaking it"
    else
      say "$1: images/$2 (or its files) changed: remaking it"
    fi
  fi
  say "$1: docker build -f deploy/images/$2 (apt-get from $mirror)"
  logged "${2%.Dockerfile}-build.log" "${nice[@]}" docker build --build-arg "BASE_IMAGE=$base" \
    --label "org.parapet.context-sha256=$sum" -f "$here/images/$2" -t "$1" "$here/images"
}

make_base
make_toolchain
make_builder
make_from_base "$origin" origin.Dockerfile
make_from_base "$prom" prometheus.Dockerfile
make_from_base "$loadgen" loadgen.Dockerfile

if [ "$build_parapet" = 1 ]; then
  say "$parapet: docker build --build-arg BUILDER_IMAGE=$builder --build-arg RUNTIME_IMAGE=$base -t $parapet ."
  start=$(date +%s)
  (cd "$repo" && logged parapet-build.log "${nice[@]}" docker build \
      --build-arg "BUILDER_IMAGE=$builder" --build-arg "RUNTIME_IMAGE=$base" -t "$parapet" .)
  say "$parapet: built in $(( $(date +%s) - start ))s, $(docker image inspect -f '{{.Size}}' "$parapet" | awk '{printf "%.1f MB", $1/1e6}') (log: $work/parapet-build.log)"
fi
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E '^parapet' >&2
