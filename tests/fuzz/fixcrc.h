/* fixcrc.h - recomputes the checksums of a (possibly mutated) block image or
 * WAL segment wherever its offsets allow, so a mutation reaches the checks
 * behind the CRCs. Shared by the fuzz targets and gen_corpus.c; it trusts
 * nothing, because it runs before any parser has checked a field. */
#ifndef SMOLDER_FIXCRC_H
#define SMOLDER_FIXCRC_H

#include "storage/st_int.h"

/* Chunk CRCs, the index CRC, then the header CRC of a block image. */
static inline void fix_block_crcs(uint8_t *img, size_t len)
{
	if (len < ST__BLK_HDR)
		return;
	uint64_t ioff = st__get_u64(img + 72);
	uint32_t ilen = st__get_u32(img + 80);
	if (ioff >= ST__BLK_HDR && ioff <= len && ilen <= len - ioff) {
		uint8_t *ip = img + ioff;
		uint64_t dir = (uint64_t)st__get_u32(img + 40) * ST__BLK_SERIES_ENT +
		               (uint64_t)st__get_u32(img + 44) * 8;
		uint32_t nchunks = st__get_u32(img + 48);
		for (uint32_t c = 0; c < nchunks; c++) {
			uint64_t e = dir + (uint64_t)c * ST__BLK_CHUNK_DIR;
			if (e + ST__BLK_CHUNK_DIR > ilen)
				break;
			uint64_t off = st__get_u64(ip + e), cl = 0;
			for (int k = 0; k < ST__BLK_NCOL; k++)
				cl += st__get_u32(ip + e + 40 + 4 * k);
			if (off <= len && cl <= len - off)
				st__put_u32(ip + e + 20, st__crc32c(0, img + off, cl));
		}
		st__put_u32(img + 84, st__crc32c(0, ip, ilen));
	}
	st__put_u32(img + 92, st__crc32c(0, img, 92));
}

/* Each record's CRC of a WAL segment, as st__wal_append() computes it:
 * header bytes 8..23, then the payload. */
static inline void fix_wal_crcs(uint8_t *buf, size_t len)
{
	size_t off = ST__WAL_SEG_HDR;
	while (len >= off && len - off >= ST__WAL_REC_HDR) {
		uint8_t *h = buf + off;
		uint32_t plen = st__get_u32(h);
		if (plen > ST__WAL_MAX_RECORD || plen > len - off - ST__WAL_REC_HDR)
			break;
		uint32_t crc = st__crc32c(0, h + 8, ST__WAL_REC_HDR - 8);
		st__put_u32(h + 4, st__crc32c(crc, h + ST__WAL_REC_HDR, plen));
		off += ST__WAL_REC_HDR + plen;
	}
}

#endif
