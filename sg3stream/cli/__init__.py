"""Command line: `sg3stream run|probe|bench|...`. Each command lives in its own module and registers on `app`."""
from . import bench, chain, eval, farm, generate, models, probe, run  # noqa: F401  (registration)
from .app import app


def main() -> None:
    from ..pipeline.heap import limit_heaps

    limit_heaps()  # before any stage thread makes a heap of its own (sg3stream/pipeline/heap.py)
    app()
