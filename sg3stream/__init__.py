"""sg3stream: streaming StyleGAN3 face inversion and editing for real videos.

    from sg3stream import Editor    # the Python API (sg3stream/api.py)
"""
__version__ = "0.1.0"
__all__ = ["Editor", "__version__"]


def __getattr__(name: str):
    # Imported on first use: the command line (and its spawned landmark workers) import this package and should
    # not pay for numpy, torch and the pipeline to start.
    if name == "Editor":
        from .api import Editor

        return Editor
    raise AttributeError(f"module 'sg3stream' has no attribute {name!r}")
