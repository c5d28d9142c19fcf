/* fuzz_block.c - libFuzzer target: a block file (or a roll-up file, the
 * same format with a step) is hostile input. Whatever
 * st__block_parse() accepts must be safe to hand to st__chunk_decode(), and
 * every decoded row must index the block's own tables, because db.c uses
 * them as array indices without checking again.
 *
 * Each input is tried twice: as it is, and with the chunk, index and header
 * CRC32Cs recomputed. Random mutations almost never keep a CRC valid, so
 * without the second pass the fuzzer would stop at the checksums and never
 * exercise the field checks and decoders behind them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/st_int.h"
#include "tests/fuzz/fixcrc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The decoder contract the readers in db.c rely on; breaking it is a bug
 * even when nothing faults here, so stop loudly. */
static void check(bool ok)
{
	if (!ok)
		abort();
}

static void run(const uint8_t *data, size_t size)
{
	st__block b;
	base_err err;
	if (st__block_parse(data, size, &b, &err))
		return;
	st__chunk_rows cr = {0};
	uint64_t sum = 0, rows = 0;
	for (uint32_t c = 0; c < b.nchunks; c++) {
		const st__blk_chunk *ch = &b.chunks[c];
		if (st__chunk_decode(&b, c, &cr))
			continue;
		check(cr.n == ch->nrows);
		for (uint32_t i = 0; i < cr.n; i++) {
			check(cr.series[i] >= ch->first_series && cr.series[i] <= ch->last_series);
			check(cr.series[i] < b.nseries && cr.stack[i] < b.nstacks);
			check(cr.ts[i] >= ch->mint && cr.ts[i] <= ch->maxt);
			/* a roll-up's rows stand for whole steps: db.c reads them
			 * only over whole steps, so each must sit at a step start */
			check(!b.step_s || cr.ts[i] % ((int64_t)b.step_s * 1000000000) == 0);
			/* what db.c does with a row: map both indices to global IDs */
			sum += b.series[cr.series[i]].id ^ b.stacks[cr.stack[i]];
			sum += (uint64_t)cr.ts[i] + (uint64_t)cr.value[i];
		}
		rows += cr.n;
	}
	check(rows <= b.nrows);
	for (uint32_t i = 0; i < b.nparents; i++)
		sum += strlen(b.parents[i]);
	for (uint32_t i = 0; i < b.ncover; i++)
		sum += b.cover[i].wal_lsn;
	/* a roll-up's groups index its series table (db.c's block_sel marks
	 * members and a group's own series by these, unchecked) */
	for (uint32_t g = 0; g < b.ngroups; g++) {
		const st__blk_group *gr = &b.groups[g];
		check(b.step_s && gr->series < b.nseries && gr->nmembers > 0);
		for (uint32_t m = 0; m < gr->nmembers; m++) {
			check(gr->members[m] < b.nseries && gr->members[m] != gr->series);
			check(m == 0 || gr->members[m] > gr->members[m - 1]);
			sum += b.series[gr->members[m]].id;
		}
	}
	/* keep the loads from being optimized away */
	__asm__ volatile("" : : "r"(sum) : "memory");
	st__chunk_rows_free(&cr);
	st__block_release(&b);
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* libFuzzer passes a heap copy of exactly size bytes, and the copy
	 * here is one too, so ASan flags even a one-byte over-read */
	run(data, size);
	if (size < ST__BLK_HDR)
		return 0;
	uint8_t *img = malloc(size);
	if (!img)
		return 0;
	memcpy(img, data, size);
	fix_block_crcs(img, size);
	if (memcmp(img, data, size))
		run(img, size);
	free(img);
	return 0;
}
