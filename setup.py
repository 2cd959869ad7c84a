from setuptools import setup

# Metadata lives in setup.cfg; this shim serves tools that want setup.py (Dataflow --setup_file).
setup()
