/*
 * Forced into the Citus build for the PostgreSQL 17 root (scripts/citus.sh pg17): the root's
 * headers come from Debian trixie, whose glibc (2.38+) has strlcpy, so PostgreSQL declares none;
 * the host compiling them is bookworm (glibc 2.36, no strlcpy). The library runs inside the root,
 * where glibc provides the function: only the declaration is missing here.
 */
#include <stddef.h>
extern size_t strlcpy(char *dst, const char *src, size_t size);
