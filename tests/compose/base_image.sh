#!/bin/sh
# Makes sure the Docker engine has the base image the Dockerfile names
# (debian:bookworm-slim). Pulled from a registry when one answers; where
# none does (this project's CI has only Debian's archive), the same Debian
# release is built with debootstrap from the archive apt already uses and
# imported under that tag, so the Dockerfile stays the one users build.
#
# Exit status: 0 the image is there; 2 the Debian archive cannot be
# reached (the caller skips, loudly); 1 anything else.
set -eu
IMAGE=${BASE_IMAGE:-debian:bookworm-slim}
DOCKER=${DOCKER:-docker}

if $DOCKER image inspect "$IMAGE" >/dev/null 2>&1; then
	echo "base image $IMAGE: present"
	exit 0
fi
if timeout 60 $DOCKER pull -q "$IMAGE" >/dev/null 2>&1; then
	echo "base image $IMAGE: pulled"
	exit 0
fi
echo "base image $IMAGE: no registry answers; building it with debootstrap"

# The mirror apt is configured with (deb822 or one-line sources), else
# Debian's CDN.
mirror=$(sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p; s/^deb  *\(http[^ ]*\/debian\)  *bookworm .*/\1/p' \
	/etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null | head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}
if ! curl -fsS -o /dev/null --max-time 30 "$mirror/dists/bookworm/Release"; then
	echo "base image: the Debian archive ($mirror) cannot be reached" >&2
	exit 2
fi
command -v debootstrap >/dev/null || {
	echo "base image: debootstrap is not installed (make deps installs it)" >&2
	exit 1
}

root=$(mktemp -d /tmp/smolder-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT INT TERM
# minbase: essential packages and apt, what bookworm-slim holds.
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1; then
	tail -n 20 "$root.log" >&2
	rm -f "$root.log"
	echo "base image: debootstrap failed" >&2
	exit 1
fi
rm -f "$root.log"
sec=$(echo "$mirror" | sed 's,/debian$,/debian-security,')
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $sec bookworm-security main
SOURCES
# As the official slim image: no apt caches, no docs or man pages later.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
	"$root"/var/cache/apt/archives/*.deb
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
	>"$root/etc/dpkg/dpkg.cfg.d/docker-slim"
tar -C "$root" -c . | $DOCKER import -c 'CMD ["bash"]' - "$IMAGE" >/dev/null
echo "base image $IMAGE: built with debootstrap from $mirror"
