"""A stand-in for Rockchip's ``rknnlite`` (rknn-toolkit-lite2) for tests on machines without an NPU."""
