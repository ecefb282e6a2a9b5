"""Deployment bundles: microcontrollers (mcu: C array, op resolver, arena, application), boards and phones
(boards), and the standalone scripts that run on a device (device/)."""
