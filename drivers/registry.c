/* SPDX-License-Identifier: MIT */
/*
 * The list of image drivers, explicit on purpose: no constructor-attribute
 * self-registration, which hides the list from the reader and loses drivers
 * that a static link drops.  Adding a driver is one line here and one in
 * registry.h.
 */
#include <string.h>

#include "checked.h"
#include "driver.h"
#include "qcow2/qcow2.h"
#include "registry.h"

/*
 * The ops tables below were written against this shape of struct drv_ops.
 * When driver.h bumps DRV_API_VERSION, review every driver listed here and
 * then this number.
 */
#define DRV_REGISTRY_API_VERSION 3
_Static_assert(DRV_API_VERSION == DRV_REGISTRY_API_VERSION,
	       "driver.h changed the ops table: review every driver in registry.c");

const struct drv_ops *const drv_registry[] = {
	&raw_driver,
	&qcow2_driver,
	&remote_nbd_driver,
	NULL,
};

/*
 * Other names for a driver.  "aio:" is blktap's name for a raw file served
 * with asynchronous I/O, kept so existing xl configurations work unchanged.
 */
static const struct {
	const char *alias;
	const char *name;
} drv_aliases[] = {
	{ .alias = "aio", .name = "raw" },
};

static const struct drv_ops *find_exact(const char *name)
{
	unsigned i;

	for (i = 0; drv_registry[i]; i++) {
		if (strcmp(drv_registry[i]->name, name) == 0)
			return drv_registry[i];
	}
	return NULL;
}

const struct drv_ops *drv_find(const char *name)
{
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(drv_aliases); i++) {
		if (strcmp(drv_aliases[i].alias, name) == 0)
			return find_exact(drv_aliases[i].name);
	}
	return find_exact(name);
}
