/* test_attest_tpm.c: with the attestation key in a TPM (swtpm on loopback) and guardian started by
 * guardian-launch, the service accepts what was measured into the PCR and nothing else: a binary
 * that reports the released binary's digest as its own is refused, and guardian will not run
 * with attestation.tpm unless the launcher measured it. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "kiln-9"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(attest_tpm, .init = setup, .fini = it_teardown, .timeout = 150);

/* The attested bed of test_attest.c in TPM mode (h_attest_enroll_tpm) on a fresh swtpm. */
static void start_bed(struct h_attest *b, bool enroll_ak)
{
	int tpm_port = 0;
	pid_t tpm;

	H_NEED_SWTPM();
	tpm = h_swtpm(&tpm_port);
	cr_assert_gt(tpm, 0, "swtpm did not start:\n%s", h_read(h_path("swtpm.log")));
	it_attest_up(b, 86400);
	h_attest_site(b, DEVICE, "");
	cr_assert_eq(h_attest_enroll_tpm(b, tpm_port, enroll_ak), 0, "setup failed:\n%s",
		     h_read(h_path("steps.log")));
	it_attest_serve(b);
	it_attest_viewer(b, "guardian/" DEVICE "/#", NULL);
}

/* guardian-launch starting 'program' (guardian or the liar) on the site. */
static void launch(struct h_attest *b, const char *program)
{
	b->gd = h_guardian_launched(program, b->site, h_path("guardian.log"));
	cr_assert_gt(b->gd, 0);
}

Test(attest_tpm, measured_launch_is_accepted)
{
	struct h_attest b;

	start_bed(&b, true);
	launch(&b, "guardian");
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"press/counter\"", 30000), 0,
		     "no attested telemetry; guardian log:\n%s\nservice log:\n%s",
		     h_read(h_path("guardian.log")), h_read(h_path("service.log")));
	cr_expect_eq(h_count(h_path("service.log"), "ok: operational certificate issued"), 1,
		     "service log:\n%s", h_read(h_path("service.log")));
	/* The evidence carried a quote, and the TPM's PCR 23 is what the service replayed. */
	cr_expect_eq(h_count(h_path("service.log"), "refused"), 0, "service log:\n%s",
		     h_read(h_path("service.log")));
}

/* The attack of the issue: a rebuilt binary that claims the released binary's digest. The
 * launcher measured what it really is into the PCR, so the quote gives it away. */
Test(attest_tpm, lying_binary_is_refused)
{
	struct h_attest b;
	char env[300];

	start_bed(&b, true);
	snprintf(env, sizeof(env), "%s/guardian", h_build());
	setenv("GUARDIAN_LIE_EXE", env, 1);
	launch(&b, "guardian-liar");
	unsetenv("GUARDIAN_LIE_EXE");
	cr_assert_eq(h_wait_contains(h_path("service.log"), "refused: measurement_mismatch", 30000),
		     0, "the liar was not refused; service log:\n%s\nguardian log:\n%s",
		     h_read(h_path("service.log")), h_read(h_path("guardian.log")));
	cr_expect_gt(h_count(h_path("service.log"), "PCR 23"), 0, "service log:\n%s",
		     h_read(h_path("service.log")));
	cr_expect_eq(h_count(h_path("service.log"), "certificate issued"), 0);
	h_sleep_ms(1000);
	cr_expect_eq(h_count(h_path("sub.out"), "\"press/counter\""), 0,
		     "the liar's telemetry got through");
}

/* Without the launcher nothing measured guardian, so it does not start at all. */
Test(attest_tpm, refuses_to_run_unlaunched)
{
	struct h_attest b;

	start_bed(&b, true);
	b.gd = h_guardian(b.site, h_path("guardian.log"));
	cr_assert_gt(b.gd, 0);
	cr_assert_neq(h_wait_exit(b.gd, 10000), 0, "guardian ran without guardian-launch");
	cr_expect_gt(h_count(h_path("guardian.log"), "start guardian through guardian-launch"), 0,
		     "guardian log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("service.log"), "certificate issued"), 0);
}

/* A device enrolled with a TPM key cannot fall back to evidence its file key signs. */
Test(attest_tpm, file_evidence_refused_for_tpm_device)
{
	struct h_attest b;

	start_bed(&b, true);
	cr_assert_eq(h_sh("sed -i 's|\"tpm\":{\"tcti\":\"[^\"]*\"},||' %s && ! grep -q tcti %s",
			  b.site, b.site),
		     0);
	it_attest_guardian(&b);
	cr_assert_eq(h_wait_contains(h_path("service.log"), "refused: bad_signature", 30000), 0,
		     "service log:\n%s", h_read(h_path("service.log")));
	cr_expect_gt(h_count(h_path("service.log"), "must carry a quote"), 0, "service log:\n%s",
		     h_read(h_path("service.log")));
}

/* A reload in TPM mode: the new policy is extended into the PCR, attested with its reference,
 * and goes into force; the enforced policy stays until then. */
Test(attest_tpm, reload_is_extended_and_attested)
{
	struct h_attest b;

	start_bed(&b, true);
	launch(&b, "guardian");
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"press/counter\"", 30000), 0,
		     "guardian log:\n%s", h_read(h_path("guardian.log")));
	/* One byte more in the policy: a new measurement, with its reference added first. */
	cr_assert_eq(h_sh("printf ' ' >>%s", h_path("policy.json")), 0);
	cr_assert_eq(h_sh("%s/guardian measure -c %s --json >%s && %s/guardian-service reference "
			  "add -d %s %s >>%s 2>&1",
			  h_build(), b.site, h_path("reference2.json"), h_build(), b.svc,
			  h_path("reference2.json"), h_path("steps.log")),
		     0);
	cr_assert_eq(kill(b.gd, SIGHUP), 0);
	cr_assert_eq(
		h_wait_count(h_path("service.log"), "ok: operational certificate issued", 2, 30000),
		0, "service log:\n%s\nguardian log:\n%s", h_read(h_path("service.log")),
		h_read(h_path("guardian.log")));
	cr_expect_eq(h_wait_contains(h_path("guardian.log"), "(attested)", 10000), 0,
		     "guardian log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("service.log"), "refused"), 0, "service log:\n%s",
		     h_read(h_path("service.log")));
}
