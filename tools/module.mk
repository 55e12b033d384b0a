# SPDX-License-Identifier: MIT
# tools/: the image tool.  Everything else under tools/ goes into libtools.a.

PROGRAMS += tap-img
tap-img_MAIN := tools/tap-img/main.c

# tools/tap-front: a local blkif frontend and load generator.
PROGRAMS += tap-front
tap-front_MAIN := tools/tap-front/main.c
