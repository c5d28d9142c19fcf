#!/bin/sh
# py_layouts.sh - prints the rows of agent/python_layouts.h for every
# CPython whose headers it finds (Debian's python3.X-dev and any prefix
# given as an argument, e.g. ~/.pyenv/versions/3.12.1), measured with
# tests/tools/py_layout.c. Regenerate the table with it when a version is
# added; versions it measures alike need only one row.
set -e
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
here=$(dirname "$0")
for inc in /usr/include/python3.* "$@"; do
	[ -d "$inc/include" ] && inc=$(ls -d "$inc"/include/python3.* | head -1)
	[ -r "$inc/Python.h" ] || continue
	cc -w -I"$inc" -o "$dir/py_layout" "$here/py_layout.c"
	"$dir/py_layout"
done
