/* spool.h: the crash-safe telemetry spool on disk (private to uplink/; README "Store and forward").
 */
#ifndef UPLINK_SPOOL_H
#define UPLINK_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "uplink.h"

/*
 * A directory of segment files, each named by the sequence number of its first
 * record (00000000000000000042.seg), holding records appended in order:
 *
 *   u32 length | u32 CRC-32C | u64 seq | payload (length bytes)     (little-endian)
 *
 * The CRC covers the length, the seq and the payload. Sealed segments may be
 * compressed whole with zstd (.zst: one frame of the same records). The file
 * "cursor" names the last sequence number the broker acknowledged (all below it
 * too); it is replaced atomically (temp file, rename). A segment is deleted
 * only once every record in it is at or below the cursor, or when the cap
 * drops it.
 *
 * A record is in the file once spool_append returns 0: a crash of the process
 * loses nothing whatever the sync policy. The policy says what survives a
 * power loss: 'always' syncs every record, 'batch' syncs every interval (the
 * window), 'none' leaves it to the kernel.
 *
 * Recovery (spool_open) never fails for what it finds: a torn tail of a
 * segment (a short record, a bad CRC, a length past the end) is cut off there,
 * a segment damaged before its end is cut at the damage and its original copied
 * into quarantine/, a compressed segment that does not decompress is moved
 * there; each is counted. Only a directory that cannot be made or written
 * fails it.
 *
 * Every function takes the spool's own mutex.
 */
struct spool;

/* How the spool writes. The hooks exist for fault injection (tests): NULL means the system call. */
struct spool_io {
	ssize_t (*writev)(int fd, const struct iovec *iov, int n);
	int (*fdatasync)(int fd);
};

/*
 * Opens (and recovers) the spool in cfg->dir, made 0700 if missing. NULL with a
 * sentence in 'why' only when the directory cannot be used. 'io' may be NULL.
 */
struct spool *spool_open(const struct spool_config *cfg, const struct spool_io *io, char *why,
			 size_t cap);
/* Syncs, writes the cursor, stops the background thread and frees 'sp'. NULL: no operation. */
void spool_close(struct spool *sp);

/*
 * Appends one record with sequence number 'seq' (above every one before it).
 * 0; GD_EFULL when the cap refused it (drop-newest); GD_EIO when the write
 * failed (counted; the file is cut back to its last whole record); GD_EINVAL
 * for a seq not above the last.
 */
int spool_append(struct spool *sp, uint64_t seq, const void *data, size_t len);

/*
 * The first record with a sequence number above 'after': 1 and a malloc'd copy
 * in *data (caller frees), 0 when there is none, GD_ENOMEM. A segment that
 * turns out damaged on reading is skipped (and counted).
 */
int spool_next(struct spool *sp, uint64_t after, void **data, size_t *len, uint64_t *seq);

/* Every record up to 'seq' is acknowledged: deletes what is wholly acknowledged, moves the cursor
 * (written by the background thread, or at once under 'always'). */
void spool_ack(struct spool *sp, uint64_t seq);

/* The newest sequence number ever appended, recovered at open: numbering goes on from it. */
uint64_t spool_last_seq(struct spool *sp);

void spool_get_stats(struct spool *sp, struct spool_stats *out);

#endif
