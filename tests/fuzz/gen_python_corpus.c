/* gen_python_corpus.c - writes the seeds of tests/fuzz/corpus/python/:
 * for each layout a code object as its interpreter lays it out (names,
 * file, a real line table from tests/unit/py_lines.h) and lasti, so the
 * fuzzer starts from memory the reader accepts. Not part of the build;
 * from the repo root:
 *
 *   cc -std=gnu11 -I. tests/fuzz/gen_python_corpus.c -o /tmp/gen_py \
 *     && /tmp/gen_py tests/fuzz/corpus/python
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/types.h>

#include "tests/unit/py_image.h"
#include "tests/unit/py_lines.h"

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	static uint8_t img[PYI_SIZE];
	for (size_t i = 0; i < sizeof(py_lines) / sizeof(py_lines[0]); i++) {
		const py_lines_vec *v = &py_lines[i];
		size_t li = 0;
		while (ag_py_layouts[li].minor != v->minor)
			li++;
		memset(img, 0, sizeof(img));
		pyi_code(&ag_py_layouts[li], img, v->func, v->func, "/srv/app/main.py", v->firstlineno,
		         v->table, v->ntable);
		char path[512];
		snprintf(path, sizeof(path), "%s/seed-%u.%u-%s", argv[1], v->major, v->minor, v->func);
		FILE *f = fopen(path, "wb");
		if (!f)
			return 1;
		uint8_t head[5] = {(uint8_t)li, (uint8_t)(v->nunits / 2)};
		/* only up to the line table's end: the rest is zeros */
		size_t n = PYI_TABLE + ag_py_layouts[li].bytes_data + v->ntable;
		fwrite(head, 1, 5, f);
		fwrite(img, 1, n, f);
		fclose(f);
	}
	return 0;
}
