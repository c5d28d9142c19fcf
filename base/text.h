/* text.h - bytes as text, once for every module: hex digits, UTF-8
 * (check, cut, mend, encode) and JSON strings. Every input here may be
 * hostile (file names, symbols and labels from the network): nothing
 * reads past the length it is given. */
#ifndef SMOLDER_BASE_TEXT_H
#define SMOLDER_BASE_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* ---- hex ---- */

/* The value of the hex digit c (either case), or -1. */
int base_hexval(int c);
/* p[0..n) as 2n lowercase hex digits and a NUL into out. */
void base_hex(const uint8_t *p, size_t n, char *out);
/* The 2n hex digits at s into out[0..n). Returns 0, or -EINVAL when one of
 * them is not a hex digit (out is then partly written). */
int base_unhex(const char *s, size_t n, uint8_t *out);

/* ---- UTF-8 ---- */

/* The length (1..4) of the valid UTF-8 sequence at s[0..n), or 0 when it
 * is not one: a stray continuation byte, a sequence cut short, overlong
 * forms, surrogates and code points past U+10FFFF are invalid. n > 0. */
size_t base_utf8_len(const char *s, size_t n);
/* Whether s[0..n) is all valid UTF-8 (NUL bytes included: they are valid). */
bool base_utf8_valid(const char *s, size_t n);
/* Replaces every byte of s[0..n) that starts no valid sequence with with,
 * in place (the length stays). */
void base_utf8_mend(char *s, size_t n, char with);
/* n, or less: the longest prefix of s[0..n) of at most max bytes that does
 * not end inside a sequence (at most 3 bytes less than max: past that the
 * bytes are no sequence, and max is the cut). */
size_t base_utf8_cut(const char *s, size_t n, size_t max);
/* Code point cp (below 0x110000) as UTF-8 into o (room for 4 bytes);
 * returns the bytes written. Surrogates are the caller's to refuse. */
size_t base_utf8_put(char *o, uint32_t cp);

/* ---- JSON ---- */

/* Appends s[0..n) to b as a quoted JSON string (RFC 8259): '"', '\\' and
 * control bytes escaped (\b \f \n \r \t, else \u00XX), and every byte that
 * starts no valid UTF-8 sequence written as \ufffd, so the output is valid
 * JSON whatever the input. Returns 0 or -ENOMEM (base_buf_put's). */
int base_json_str(base_buf *b, const char *s, size_t n);

#endif
