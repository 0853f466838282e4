/*
 * eosin: run eosin-CMD, as git runs git-CMD. The program is looked for next
 * to this one first, then on PATH. See eosin(1).
 */
#include <err.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(void)
{
	fprintf(stderr, "usage: eosin COMMAND [ARG ...]\n"
	                "commands: tile caption-fetch encode bag align index query cat make-model\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		usage();
	if (!strcmp(argv[1], "--version")) {
		puts("eosin 0.1.0");
		return 0;
	}
	if (strchr(argv[1], '/'))
		errx(2, "'%s' is not a command", argv[1]);
	char name[256], path[PATH_MAX + 256], self[PATH_MAX];
	snprintf(name, sizeof name, "eosin-%s", argv[1]);
	argv[1] = name;
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0) {
		self[n] = 0;
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = 0;
			snprintf(path, sizeof path, "%s/%s", self, name);
			if (access(path, X_OK) == 0) {
				execv(path, argv + 1);
				err(1, "cannot run '%s'", path);
			}
		}
	}
	execvp(name, argv + 1);
	err(2, "'%s' is not an eosin command (no %s)", argv[1] + 6, name);
}
