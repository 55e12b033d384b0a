# SPDX-License-Identifier: MIT
# tapdisk/: the per-disk process.  Everything else under tapdisk/ goes into
# libtapdisk.a (the vbd, the control socket, the frontends).

PROGRAMS += tapdisk
tapdisk_MAIN := tapdisk/main.c
