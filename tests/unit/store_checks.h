/* store_checks.h: the store conformance checks (service/store.h), the same for every backend:
 * test_store.c runs them on files and SQLite, test_store_pg.c on a throwaway PostgreSQL.
 * Each check uses Criterion's asserts, on a store opened fresh (schema made) by the caller. */
#ifndef STORE_CHECKS_H
#define STORE_CHECKS_H

#include "../../service/store.h"

void store_check_devices(struct store *st);    /* get/put/list, AK kept, installed */
void store_check_nonces(struct store *st);     /* consume, used, duplicate tag, sweep */
void store_check_references(struct store *st); /* put/replace/remove/all sorted, generation */
void store_check_certs(struct store *st);      /* issued supersedes, revoke, expiry, the CRL list */
void store_check_reports(struct store *st);    /* update merge, refusal changes nothing, list */
/* release put/get: per device, replaced, a withdrawal keeps the version, bad input refused */
void store_check_releases(struct store *st);
/*
 * 32 processes, each with its own store opened from 'cfg' on 'dir', released together by one
 * pipe, consume one nonce: exactly one wins, the others see STORE_USED.
 */
void store_check_nonce_race(const char *dir, const struct store_config *cfg);
/* What is put through one handle is there after a close and an open (without 'create'). */
void store_check_reopen(const char *dir, const struct store_config *cfg);
/* Two handles open at once on one store: each sees the other's writes, the generation too. */
void store_check_two_handles(const char *dir, const struct store_config *cfg);
/* 16 processes issue 10 certificates each to one device at once: all but one superseded. */
void store_check_cert_race(const char *dir, const struct store_config *cfg);
/* store_attest_record: a used nonce writes nothing else, issued supersedes, refused revokes,
 * the installed document put, the return values. */
void store_check_attest_record(struct store *st);
/* 32 processes record one decision each on one nonce (store_attest_record) at once: exactly one
 * wins, exactly one certificate recorded, the nonce's tag is the winner's. */
void store_check_attest_race(const char *dir, const struct store_config *cfg);
/* 8 processes count up one report document 10 times each at once: no update lost. */
void store_check_report_race(const char *dir, const struct store_config *cfg);

#endif
