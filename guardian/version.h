/* version.h: the release guardian reports in its log, health, console and attestation evidence. */
#ifndef GUARDIAN_VERSION_H
#define GUARDIAN_VERSION_H

#define GD_VERSION "0.1.0"

#endif
