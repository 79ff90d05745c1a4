"""The one compiled module of the sidecar; everything else is in pyproject.toml.

alert_sidecar.formats._avro_projection, from Cython: the decoder that reads only
the fields a worker asks for (see alert_sidecar/formats/avro_projection.py).
It is optional: without a C compiler the install goes on and the stage decodes
with fastavro alone.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(ext_modules=cythonize(
    [Extension("alert_sidecar.formats._avro_projection", ["runtime/alert_sidecar/formats/_avro_projection.pyx"],
               extra_compile_args=["-O2", "-g0"], optional=True)],
    compiler_directives={"language_level": 3}))
