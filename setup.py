# The C helper is compiled by cffi when the package is installed.
from setuptools import setup

setup(cffi_modules=["nmfuse/helper_build.py:ffibuilder"])
