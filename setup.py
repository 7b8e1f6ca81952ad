# The C extensions are compiled by cffi when the package is installed: the
# netmap ABI module first, then the helper that includes it, and the
# io_uring transport of the device layer.
from setuptools import setup

setup(cffi_modules=["nmfuse/abi/netmap_build.py:ffibuilder", "nmfuse/helper_build.py:ffibuilder",
                    "nmfuse/uring_build.py:ffibuilder"])
