/* text.c - hex, UTF-8 and JSON strings (text.h). */
#include <errno.h>

#include "base/text.h"

static const char hexdig[] = "0123456789abcdef";

int base_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void base_hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexdig[p[i] >> 4];
		out[2 * i + 1] = hexdig[p[i] & 15];
	}
	out[2 * n] = 0;
}

int base_unhex(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		int hi = base_hexval((unsigned char)s[2 * i]);
		int lo = hi < 0 ? -1 : base_hexval((unsigned char)s[2 * i + 1]);
		if (lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

size_t base_utf8_len(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	unsigned c = s[0];
	size_t len;
	unsigned cp, min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2; cp = c & 0x1f; min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3; cp = c & 0x0f; min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4; cp = c & 0x07; min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

bool base_utf8_valid(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		if ((unsigned char)s[i] < 0x80) {
			i++;
			continue;
		}
		size_t len = base_utf8_len(s + i, n - i);
		if (!len)
			return false;
		i += len;
	}
	return true;
}

void base_utf8_mend(char *s, size_t n, char with)
{
	for (size_t i = 0; i < n;) {
		size_t len = base_utf8_len(s + i, n - i);
		if (!len) {
			s[i++] = with;
			continue;
		}
		i += len;
	}
}

size_t base_utf8_cut(const char *s, size_t n, size_t max)
{
	if (n <= max)
		return n;
	/* a sequence is at most 4 bytes: its lead is at most 3 back. More
	 * continuation bytes than that are no sequence, and a cut anywhere in
	 * them will do */
	size_t cut = max;
	while (cut > 0 && max - cut < 3 && ((unsigned char)s[cut] & 0xc0) == 0x80)
		cut--;
	return ((unsigned char)s[cut] & 0xc0) == 0x80 ? max : cut;
}

size_t base_utf8_put(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

int base_json_str(base_buf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	int rc = base_buf_reserve(b, n + 2);
	rc = rc ? rc : base_buf_putc(b, '"');
	size_t i = 0;
	while (i < n && !rc) {
		/* copy the longest run that needs no escaping in one go: names
		 * rarely need any, and a tree renders millions of them */
		size_t run = i;
		while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
			run++;
		if (run > i) {
			rc = base_buf_put(b, p + i, run - i);
			i = run;
			continue;
		}
		unsigned char c = p[i];
		if (c >= 0x80) {
			size_t len = base_utf8_len(s + i, n - i);
			rc = len ? base_buf_put(b, p + i, len) : base_buf_put(b, "\\ufffd", 6);
			i += len ? len : 1;
			continue;
		}
		const char *e = NULL;
		switch (c) {
		case '"': e = "\\\""; break;
		case '\\': e = "\\\\"; break;
		case '\b': e = "\\b"; break;
		case '\f': e = "\\f"; break;
		case '\n': e = "\\n"; break;
		case '\r': e = "\\r"; break;
		case '\t': e = "\\t"; break;
		}
		if (e) {
			rc = base_buf_put(b, e, 2);
		} else {
			char u[6] = {'\\', 'u', '0', '0', hexdig[c >> 4], hexdig[c & 15]};
			rc = base_buf_put(b, u, sizeof(u));
		}
		i++;
	}
	return rc ? rc : base_buf_putc(b, '"');
}
