"""The package ships engines/, kernels/ and bench/ and every sub-package, installed editable or not."""
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for name, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"


def test_mapped_packages_import():
    import sg3stream.bench
    import sg3stream.engines
    import sg3stream.kernels  # noqa: F401


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the source tree")
def test_plain_wheel_contains_the_mapped_packages(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    import zipfile

    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("sg3stream/engines/__init__.py", "sg3stream/kernels/__init__.py", "sg3stream/bench/__init__.py",
                     "sg3stream/data/face.png", "sg3stream/cli/__init__.py"):
        assert required in names
