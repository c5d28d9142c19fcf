/* fuzz_wire.c - the native batch decoder (wire/wire.c) on hostile input.
 * An input starting with the magic is a whole body; anything else is taken
 * as the inflated payload and wrapped in a valid header and lz4 block
 * first, so that mutations reach the parser instead of dying in lz4.
 * Whatever decodes must be internally consistent (indices in range, stack
 * IDs equal to their frames' hash) and re-encode to a body that decodes to
 * the same bytes again; a refusal always says why. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

#include "wire/wire.h"

static uint8_t *wrap(const uint8_t *raw, size_t n, size_t *len)
{
	int bound = LZ4_compressBound((int)n);
	uint8_t *b = malloc(WIRE_HEADER_LEN + (size_t)bound);
	if (!b)
		abort();
	int c = LZ4_compress_default((const char *)raw, (char *)b + WIRE_HEADER_LEN, (int)n,
	                             bound);
	if (c <= 0)
		abort();
	memcpy(b, WIRE_MAGIC, 8);
	uint8_t h[12] = {WIRE_VERSION, 0, 0, 0};
	for (int k = 0; k < 4; k++) {
		h[4 + k] = (uint8_t)(n >> (8 * k));
		h[8 + k] = (uint8_t)((uint32_t)c >> (8 * k));
	}
	memcpy(b + 8, h, 12);
	*len = WIRE_HEADER_LEN + (size_t)c;
	return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *own = NULL;
	size_t len = size;
	const uint8_t *body = data;
	if (size > (1u << 20))
		return 0;
	if (size < 8 || memcmp(data, WIRE_MAGIC, 8)) {
		own = wrap(data, size, &len);
		body = own;
	}
	wire_decoded *d = NULL;
	base_err err = {0};
	int rc = wire_decode(body, len, &d, &err);
	if (rc) {
		if ((rc != -EBADMSG && rc != -EMSGSIZE) || !err.msg[0] || d)
			abort();
		free(own);
		return 0;
	}
	const wire_batch *b = wire_decoded_batch(d);
	for (uint32_t i = 0; i < b->nstacks; i++) {
		const wire_stack *s = &b->stacks[i];
		for (uint32_t k = 0; k < s->nframes; k++)
			if (s->frames[k].kind == WIRE_FRAME_USER && s->frames[k].object >= b->nobjects)
				abort();
		if (wire_stack_id(b->objects, b->nobjects, s->frames, s->nframes) != s->id)
			abort();
	}
	for (uint32_t i = 0; i < b->nrows; i++)
		if (b->rows[i].process >= b->nprocesses || !b->rows[i].count)
			abort();
	uint8_t *e1 = NULL, *e2 = NULL;
	size_t l1, l2;
	wire_decoded *d2 = NULL;
	if (wire_encode(b, &e1, &l1, &err) || wire_decode(e1, l1, &d2, &err) ||
	    wire_encode(wire_decoded_batch(d2), &e2, &l2, &err) || l1 != l2 ||
	    memcmp(e1, e2, l1))
		abort();
	free(e1);
	free(e2);
	wire_decoded_free(d2);
	wire_decoded_free(d);
	free(own);
	return 0;
}
