/* SPDX-License-Identifier: MIT */
/*
 * The ops tables of the in-tree drivers, for drivers/registry.c.  Each
 * driver file defines exactly one of these at its bottom; nothing else
 * refers to them by name (everything goes through drv_find()).
 */
#ifndef QTAP_REGISTRY_H
#define QTAP_REGISTRY_H

#include "driver.h"

extern const struct drv_ops raw_driver;
extern const struct drv_ops remote_nbd_driver;

#endif
