#!/bin/sh
# mkbid.sh DIR - ELF files on which build-ID readers have disagreed, built
# with the toolchain for the tests of wire/buildid.h's rule (the unit tests
# of wire, agent and server, and cli_test.sh):
#   DIR/bid_long    a GNU build-id note of 80 bytes (more than the wire's
#                   64): named by its fallback ID (content hash)
#   DIR/bid_64      a note of exactly 64 bytes: named by it (01 02 .. 40)
#   DIR/bid_differ  its PT_NOTE segment carries build ID ab*20, its note
#                   sections only cd*20 (the segment's section is marked
#                   SHT_PROGBITS, a non-loaded .note.b holds the other):
#                   named by the sections', cd*20, as libdw and debuginfod
#                   name it
# Debian's python3 writes the one note and patches the one section header. Exits non-zero, saying
# why, when a tool fails or a file is not what it should be.
set -eu
dir=$1
mkdir -p "$dir"
printf 'int main(void) { return 0; }\n' >"$dir/bid.c"
hexseq() { i=1; while [ "$i" -le "$1" ]; do printf '%02x' "$i"; i=$((i + 1)); done; }
gcc -o "$dir/bid_long" "$dir/bid.c" -Wl,--build-id=0x"$(hexseq 80)"
gcc -o "$dir/bid_64" "$dir/bid.c" -Wl,--build-id=0x"$(hexseq 64)"
ab=$(printf 'ab%.0s' 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20)
cd_=$(printf 'cd%.0s' 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20)
gcc -o "$dir/bid_ab" "$dir/bid.c" -Wl,--build-id=0x"$ab"
# the other note: namesz 4, descsz 20, NT_GNU_BUILD_ID (3), "GNU\0", cd*20
/usr/bin/python3 -c 'import struct, sys; sys.stdout.buffer.write(struct.pack("<III", 4, 20, 3) + b"GNU\0" + b"\xcd" * 20)' \
	>"$dir/note_cd.bin"
objcopy --add-section .note.b="$dir/note_cd.bin" "$dir/bid_ab" "$dir/bid_differ"
/usr/bin/python3 - "$dir/bid_differ" <<'PY'
import struct, sys
path = sys.argv[1]
b = bytearray(open(path, 'rb').read())
assert b[:4] == b'\x7fELF' and b[4] == 2 and b[5] == 1, 'ELF64 little-endian wanted'
shoff, = struct.unpack_from('<Q', b, 0x28)
shentsize, shnum, shstrndx = struct.unpack_from('<HHH', b, 0x3a)
stroff, = struct.unpack_from('<Q', b, shoff + shstrndx * shentsize + 0x18)
for i in range(shnum):
    h = shoff + i * shentsize
    name, = struct.unpack_from('<I', b, h)
    end = b.index(b'\0', stroff + name)
    if bytes(b[stroff + name:end]) == b'.note.gnu.build-id':
        struct.pack_into('<I', b, h + 4, 1)  # SHT_PROGBITS
        break
else:
    sys.exit('no .note.gnu.build-id section')
# the segment must still hold the ab note: the file is only as good as that
phoff, = struct.unpack_from('<Q', b, 0x20)
phentsize, phnum = struct.unpack_from('<HH', b, 0x36)
want = struct.pack('<III', 4, 20, 3) + b'GNU\0' + b'\xab' * 20
for i in range(phnum):
    p_type, _, p_offset = struct.unpack_from('<IIQ', b, phoff + i * phentsize)
    p_filesz, = struct.unpack_from('<Q', b, phoff + i * phentsize + 0x20)
    if p_type == 4 and want in b[p_offset:p_offset + p_filesz]:  # PT_NOTE
        break
else:
    sys.exit('no PT_NOTE segment with the ab note')
open(path, 'wb').write(b)
PY
# the files are only as good as their notes: check them with readelf
note() { LC_ALL=C readelf -n "$1" | sed -n 's/.*Build ID: \([0-9a-f]*\).*/\1/p' | tr '\n' ' '; }
[ "$(note "$dir/bid_long")" = "$(hexseq 80) " ] || { echo "mkbid: bid_long: $(note "$dir/bid_long")" >&2; exit 1; }
[ "$(note "$dir/bid_64")" = "$(hexseq 64) " ] || { echo "mkbid: bid_64: $(note "$dir/bid_64")" >&2; exit 1; }
secs=$(note "$dir/bid_differ")
[ "$secs" = "$cd_ " ] || { echo "mkbid: bid_differ sections: '$secs'" >&2; exit 1; }
