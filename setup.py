# The C helper and the io_uring extension are compiled by cffi when the
# package is installed.
from setuptools import setup

setup(cffi_modules=["nmfuse/helper_build.py:ffibuilder", "nmfuse/uring_build.py:ffibuilder"])
