# SPDX-License-Identifier: MIT
# tools/: the image tool.  Everything else under tools/ goes into libtools.a.

PROGRAMS += tap-img
tap-img_MAIN := tools/tap-img/main.c

# tools/tap-front: a local blkif frontend and load generator.
PROGRAMS += tap-front
tap-front_MAIN := tools/tap-front/main.c

# blktap's old tool names: tap-img dispatches on argv[0] (tools/tap-img/compat.c).
TAPIMG_COMPAT_NAMES := qcow-create img2qcow qcow2raw
TAPIMG_COMPAT_LINKS := $(addprefix $(BUILD)/bin/,$(TAPIMG_COMPAT_NAMES))
all: $(TAPIMG_COMPAT_LINKS)
$(TAPIMG_COMPAT_LINKS): $(BUILD)/bin/tap-img
	$(Q)ln -sf tap-img $@
