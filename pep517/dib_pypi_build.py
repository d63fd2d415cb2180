"""PEP 517 build backend of dib-pypi: maturin, with the DIB element made first.

maturin builds ``pypi-mirror`` and copies ``[tool.maturin] data``
(``target/wheel-data``) into the wheel, whose ``data/`` part pip installs
under the prefix. That directory holds the ``pypi`` element: hook scripts,
``README.rst``, ``environment.d`` and the three hook binaries, which must be
linked statically (they run in image chroots of any distribution), so
maturin, which builds one crate's binaries its own way, cannot build them.
``build_wheel`` and ``build_editable`` therefore run ``cargo xtask
wheel-data`` first: the code of ``cargo xtask element``, which builds the
binaries static, checks them and lays the element out. Every other hook is
maturin's own, after making sure the data directory exists: maturin
refuses to start without it, even to write metadata or an sdist.

Needs cargo (a Rust toolchain) on PATH, like maturin.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any, Mapping, Optional

# Without cargo on PATH, maturin would fetch a Rust toolchain into a temp
# directory: enough for pypi-mirror, not for the element, whose build runs
# cargo itself. Say that cargo is missing instead (below).
os.environ.setdefault("MATURIN_NO_INSTALL_RUST", "1")

import maturin  # noqa: E402
from maturin import (  # noqa: E402,F401 (PEP 517 hooks, re-exported unchanged)
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
)


def _data_dir() -> None:
    """Make ``[tool.maturin] data`` if it is missing (from a fresh checkout)."""
    os.makedirs(maturin.get_config()["data"], exist_ok=True)


def _wheel_data() -> None:
    """Run ``cargo xtask wheel-data`` (without the alias, which needs .cargo/)."""
    cargo = os.environ.get("CARGO", "cargo")
    cmd = [cargo, "run", "--quiet", "--locked", "--package", "xtask", "--", "wheel-data"]
    try:
        subprocess.run(cmd, check=True)
    except FileNotFoundError:
        raise SystemExit(
            f"dib-pypi: {cargo} not found: building the pypi element needs a Rust toolchain"
        ) from None
    except subprocess.CalledProcessError as e:
        raise SystemExit(
            f"dib-pypi: {' '.join(cmd)} failed (exit {e.returncode}), see above"
        ) from None


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Optional[Mapping[str, Any]] = None
) -> str:
    _data_dir()
    return maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_sdist(
    sdist_directory: str, config_settings: Optional[Mapping[str, Any]] = None
) -> str:
    _data_dir()
    return maturin.build_sdist(sdist_directory, config_settings)


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    _wheel_data()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    _wheel_data()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)


get_requires_for_build_editable = get_requires_for_build_wheel
