/* SPDX-License-Identifier: MIT */
/*
 * The qcow2 driver's ops table.
 *
 * Not listed in drivers/registry.c yet: this step of the driver reads only,
 * and a user must not reach a half driver through "qcow2:" specs.  Tests
 * open images with drv_image_open(&qcow2_driver, ...).
 */
#ifndef QTAP_QCOW2_H
#define QTAP_QCOW2_H

#include "driver.h"

extern const struct drv_ops qcow2_driver;

#endif
