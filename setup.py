# The C extensions are compiled by cffi when the package is installed: the
# netmap ABI module first, then the helper that includes it.
from setuptools import setup

setup(cffi_modules=["nmfuse/abi/netmap_build.py:ffibuilder", "nmfuse/helper_build.py:ffibuilder"])
