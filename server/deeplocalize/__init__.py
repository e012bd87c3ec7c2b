"""DeepLocalize: find and localize faults in Keras training code.

Kept import-free on purpose: the probe subpackage is loaded by path inside the
user's interpreter, which may lack every dependency of the parent process.
"""

__version__ = "0.1.0"
