# SPDX-License-Identifier: MIT
# control/: the daemon and its CLI.  Everything else under control/ goes into
# libcontrol.a (protocol, client, Xen backend).

PROGRAMS += tapctld tap-ctl
tapctld_MAIN := control/tapctld.c
tap-ctl_MAIN := control/tap-ctl.c
