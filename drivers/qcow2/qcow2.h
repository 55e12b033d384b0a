/* SPDX-License-Identifier: MIT */
/*
 * The qcow2 driver's ops table.
 *
 * Listed in drivers/registry.c as "qcow2".
 */
#ifndef QTAP_QCOW2_H
#define QTAP_QCOW2_H

#include "driver.h"

extern const struct drv_ops qcow2_driver;

#endif
