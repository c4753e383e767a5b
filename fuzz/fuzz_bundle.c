/* fuzz_bundle.c: libFuzzer target: any bytes as a signed update bundle are refused or staged,
 * never a crash, a leak or a file left behind; and any bytes as a manifest parse or are refused.
 */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../proto/bundle.h"

/*
 * A throwaway update key's public half (guardian-service release keygen; the private half was
 * not kept). It signed the valid seeds in fuzz/corpus/bundle, so mutations of their files
 * reach the streaming, length and hash checks behind the signatures. New seeds need a new key
 * here.
 */
static const char update_pub[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFDz82tsDUHQoh+0UdUdGtCl1lna7\n"
	"Bk35aBFdvQnO3H6gdrAZMoSPcgLTiz/xrjr6V2Na40J3/U2CU586l8S1Fw==\n"
	"-----END PUBLIC KEY-----\n";
#define FUZZ_NOW_MS INT64_C(1800000000000) /* 2027-01-15: the seeds are valid then */

static char dir[64], bundle[96], stage[96];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The staged files of an accepted bundle go; anything left after a refusal is a bug. */
static void stage_sweep(int accepted)
{
	DIR *d = opendir(stage);
	struct dirent *e;
	char path[192];

	if (d == NULL)
		abort();
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (!accepted) {
			fprintf(stderr, "fuzz_bundle: %s left in the staging directory\n",
				e->d_name);
			abort();
		}
		snprintf(path, sizeof(path), "%s/%s", stage, e->d_name);
		unlink(path);
	}
	closedir(d);
}

/* The scratch directory goes when the fuzzer exits. */
static void scratch_remove(void)
{
	stage_sweep(1);
	rmdir(stage);
	unlink(bundle);
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct bundle_manifest m;
	static struct bundle_info info;
	const char *pems[1] = { update_pub };
	struct bundle_trust trust = { .key_pems = pems,
				      .nkeys = 1,
				      .threshold = 1,
				      .device_class = "press-line",
				      .floor = 0,
				      .now_ms = FUZZ_NOW_MS };
	enum bundle_refusal rc;
	char why[512];
	FILE *f;

	if (dir[0] == '\0') {
		strcpy(dir, "/tmp/fuzz_bundle.XXXXXX");
		if (mkdtemp(dir) == NULL)
			abort();
		snprintf(bundle, sizeof(bundle), "%s/b", dir);
		snprintf(stage, sizeof(stage), "%s/stage", dir);
		if (mkdir(stage, 0700) != 0)
			abort();
		atexit(scratch_remove);
	}
	f = fopen(bundle, "wb");
	if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
		abort();
	rc = bundle_verify_extract(bundle, &trust, stage, &m, why, sizeof(why));
	if (rc > BUNDLE_IO || bundle_refusal_names[rc] == NULL)
		abort();
	stage_sweep(rc == BUNDLE_OK);
	(void)bundle_inspect(bundle, &info, why, sizeof(why));
	bundle_info_free(&info);
	/* The manifest reader on its own: a mutated manifest never gets past the signatures. */
	(void)bundle_manifest_parse((const char *)data, size, &m, why, sizeof(why));
	return 0;
}
