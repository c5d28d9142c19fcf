/* parse.h - the query language's front end: label selectors
 * (TYPE{label="v", label=~"re", ...}), times and durations, with exact error
 * positions. It only parses and validates; selecting and merging series is
 * the engine's job. docs/query-language.md is the reference for users. */
#ifndef SMOLDER_Q_PARSE_H
#define SMOLDER_Q_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "storage/storage.h"

/* The profile type a selector without a TYPE prefix means: on-CPU time. */
#define Q_DEFAULT_TYPE "process_cpu:samples:count:cpu:nanoseconds:delta"

/* Limits on a selector. Exceeding one is a parse error naming it. */
#define Q_MAX_SELECTOR_LEN 16384  /* bytes of the selector text, and of its
                                   * canonical form (q_selector_format()) */
#define Q_MAX_MATCHERS     64     /* matchers inside the braces; the type's
                                   * own matcher does not count */

/* Bytes that always hold q_selector_format()'s output, NUL included: the
 * length limit applies to the canonical form as well as to the input. */
#define Q_SELECTOR_FORMAT_MAX (Q_MAX_SELECTOR_LEN + 1)

/* Why parsing failed, in a base_err: pos is the 0-based byte offset in
 * the input where the problem is (the input's length when it ended too
 * early); msg starts with "LINE:COL: " (1-based line, 1-based byte
 * column) and says what was expected there, ready to show a user. */

typedef struct q_selector q_selector;

/* Parses a selector such as
 *     process_cpu:samples:count:cpu:nanoseconds:delta{service="api", version=~"1\\.4.*"}
 * Regexes are compiled once here (as storage compiles them) so a bad one is
 * reported with the position of its string. On success *out is a new
 * selector the caller frees with q_selector_free(). Returns 0, -EINVAL with
 * err filled for a bad selector, or -ENOMEM. err may be NULL. */
int q_parse_selector(const char *s, q_selector **out /* out */, base_err *err);

/* Accepts NULL. */
void q_selector_free(q_selector *sel);

/* The profile type: the TYPE prefix, or Q_DEFAULT_TYPE when there was none.
 * Owned by sel. */
const char *q_selector_type(const q_selector *sel);

/* The matchers to hand to st_select(), in source order after the type's own
 * {ST_TYPE_LABEL, ST_MATCH_EQ, type}, which is always first; *n counts it
 * (so *n >= 1). Names and values are owned by sel. */
const st_matcher *q_selector_matchers(const q_selector *sel, size_t *n /* out */);

/* Writes the canonical form of sel to buf: the type always spelled out,
 * then "{", matchers in source order as name, operator and a double-quoted
 * value, separated by ", ", then "}" (also when there are none). Values use
 * the fewest escapes (\\ \" \n \r \t, \xHH for other control bytes), so the
 * form parses back to the same selector and formats to the same text.
 * Returns its length without the NUL, or -ENOSPC when n is too small, buf
 * then holding a NUL-terminated prefix (when n > 0). Q_SELECTOR_FORMAT_MAX
 * bytes always suffice. */
int q_selector_format(const q_selector *sel, char *buf, size_t n);

/* Parses a point in time into nanoseconds since the Unix epoch:
 *   RFC 3339          2026-01-01T12:00:00Z, 2026-01-01T12:00:00.25+02:00
 *   unix seconds      1767225600, 1767225600.5   (1 to 11 integer digits)
 *   unix milliseconds 1767225600000             (12 to 14 digits)
 *   relative to now   now, now-1h, now+5m, -15m (= now-15m), +5m
 * The digit count alone decides seconds or milliseconds. Surrounding
 * whitespace is ignored. Returns 0, or -EINVAL with err filled for bad input
 * or a result outside int64 nanoseconds. err may be NULL. */
int q_parse_time(const char *s, int64_t now_ns, int64_t *out_ns /* out */,
                 base_err *err);

/* Parses a duration as Prometheus does: one or more NUMBER UNIT, units from
 * largest to smallest, each at most once: y (365 d), w, d, h, m, s, ms, e.g.
 * "90s", "1h30m", "2d12h"; "0" alone is zero. No sign. Surrounding
 * whitespace is ignored. Returns 0, or -EINVAL with err filled (also when
 * the total does not fit in int64 nanoseconds, about 292 years). */
int q_parse_duration(const char *s, int64_t *out_ns /* out */, base_err *err);

/* Tests only: when set to n > 0, the n-th allocation the parser makes from
 * then on (its own or PCRE2's) fails, once, and the counter returns to 0.
 * Per thread, so a test cannot disturb another thread's parse. */
extern _Thread_local long q__fail_alloc_in;

#endif
