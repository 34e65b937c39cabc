#!/usr/bin/env python3
"""System shared libraries that Qt's xcb platform plugin and vtk's OpenGL rendering need.

The PySide6 and vtk wheels bundle Qt and VTK but not the X11/OpenGL libraries of the system. Where one is
missing, Qt's xcb platform plugin (``PySide6/Qt/plugins/platforms/libqxcb.so``) fails to load and the app
aborts ("Could not load the Qt platform plugin xcb", exit 134). scripts/setup.sh runs this after pip install::

    python scripts/qt_system_libs.py [--log FILE] [--check]

It finds the plugins without importing Qt, collects what ``ldd`` reports "not found" (plus the libraries vtk
opens at run time), and, on Debian/Ubuntu as root, installs their packages with apt-get. Otherwise it prints one
line naming the install command (or, elsewhere, the missing libraries) and exits 1. Nothing missing: silent,
exit 0. ``--check`` only reports. Standard library only, so that it runs before anything is installed.
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Library file name (soname) -> Debian/Ubuntu package that ships it (Debian 12, Ubuntu 22.04/24.04; on 24.04
# several are renamed ``...t64`` and still provide these names, which apt-get resolves).
SONAME_PACKAGES: dict[str, str] = {
    # X11 / xcb: what libqxcb.so links
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-dri2.so.0": "libxcb-dri2-0",
    "libxcb-dri3.so.0": "libxcb-dri3-0",
    "libxcb-present.so.0": "libxcb-present0",
    "libxcb-ewmh.so.2": "libxcb-ewmh2",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libXcursor.so.1": "libxcursor1",
    "libXext.so.6": "libxext6",
    "libXfixes.so.3": "libxfixes3",
    "libXi.so.6": "libxi6",
    "libXrandr.so.2": "libxrandr2",
    "libXrender.so.1": "libxrender1",
    "libXt.so.6": "libxt6",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    # OpenGL (glvnd)
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libOpenGL.so.0": "libopengl0",
    # fonts, D-Bus, GLib and what they pull in
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libpng16.so.16": "libpng16-16",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
    "libexpat.so.1": "libexpat1",
    "libbrotlidec.so.1": "libbrotli1",
    "libbrotlicommon.so.1": "libbrotli1",
    "libpcre2-8.so.0": "libpcre2-8-0",
    "libbsd.so.0": "libbsd0",
    "libmd.so.0": "libmd0",
    "libsystemd.so.0": "libsystemd0",
    "libcap.so.2": "libcap2",
    "libgcrypt.so.20": "libgcrypt20",
    "libgpg-error.so.0": "libgpg-error0",
    "liblzma.so.5": "liblzma5",
    "liblz4.so.1": "liblz4-1",
    "libgomp.so.1": "libgomp1",
}

# Qt plugins whose links must resolve, relative to the PySide6 package folder. The xcb GL integrations are
# loaded by libqxcb.so for OpenGL windows.
QT_PLUGINS = (
    "Qt/plugins/platforms/libqxcb.so",
    "Qt/plugins/xcbglintegrations/libqxcb-glx-integration.so",
    "Qt/plugins/xcbglintegrations/libqxcb-egl-integration.so",
)
# vtk >= 9.4 wheels do not link X11/OpenGL; they dlopen these at run time (so ldd cannot see them).
VTK_RUNTIME_LIBS = ("libX11.so.6", "libXcursor.so.1", "libGL.so.1")


def parse_ldd(text: str) -> list[str]:
    """Library names that ``ldd`` output reports as not found.

    Args:
        text: ``ldd`` standard output, one ``name => path (address)`` line per library.

    Returns:
        The missing names in first-seen order, each once (``ldd`` repeats a name for every library needing it).
    """
    missing: list[str] = []
    for line in text.splitlines():
        name, sep, where = line.strip().partition("=>")
        if sep and where.strip() == "not found" and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def debian_packages(sonames: list[str]) -> tuple[list[str], list[str]]:
    """Debian/Ubuntu packages that provide the given library names.

    Args:
        sonames: library file names such as ``libxcb-icccm.so.4``.

    Returns:
        (packages in first-seen order without repeats, names with no known package).
    """
    packages: list[str] = []
    unknown: list[str] = []
    for name in sonames:
        package = SONAME_PACKAGES.get(name)
        if package is None:
            unknown.append(name)
        elif package not in packages:
            packages.append(package)
    return packages, unknown


def package_dir(name: str) -> Path | None:
    """Folder of an installed package, found without importing it (importing PySide6 loads Qt)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def qt_plugin_files() -> list[Path]:
    """The Qt plugin files of the installed PySide6 that exist (none where PySide6 is absent)."""
    root = package_dir("PySide6")
    if root is None:
        return []
    return [root / rel for rel in QT_PLUGINS if (root / rel).is_file()]


def ldd_missing(files: list[Path]) -> list[str]:
    """Libraries that ``ldd`` reports not found for any of ``files`` (empty where ``ldd`` is absent)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    missing: list[str] = []
    for path in files:
        out = subprocess.run([ldd, str(path)], capture_output=True, text=True, check=False).stdout
        missing += [name for name in parse_ldd(out) if name not in missing]
    return missing


def dlopen_missing(sonames: tuple[str, ...]) -> list[str]:
    """Names among ``sonames`` that the dynamic loader cannot open."""
    missing = []
    for name in sonames:
        try:
            ctypes.CDLL(name)
        except OSError:
            missing.append(name)
    return missing


def missing_libraries() -> list[str]:
    """System libraries the installed Qt xcb plugin and vtk rendering need but that are not found (Linux)."""
    if not sys.platform.startswith("linux"):
        return []  # the macOS and Windows wheels bundle what they need
    missing = ldd_missing(qt_plugin_files())
    if package_dir("vtkmodules") is not None:
        missing += [name for name in dlopen_missing(VTK_RUNTIME_LIBS) if name not in missing]
    return missing


def is_debian_like(os_release: str) -> bool:
    """Whether ``/etc/os-release`` text names Debian, Ubuntu or a derivative (``ID``/``ID_LIKE``)."""
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        if key in ("ID", "ID_LIKE") and {"debian", "ubuntu"} & set(value.strip().strip("\"'").split()):
            return True
    return False


def install_command(packages: list[str], sudo: bool) -> str:
    """The apt-get command line that installs ``packages`` (prefixed with sudo for a normal user)."""
    return ("sudo " if sudo else "") + "apt-get install -y " + " ".join(packages)


def apt_install(packages: list[str], log) -> bool:
    """Install ``packages`` with apt-get (root), refreshing the package lists once if the first try fails.

    Args:
        packages: Debian package names.
        log: open text file that receives apt-get's output.

    Returns:
        Whether apt-get succeeded.
    """
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]

    def run(cmd: list[str]) -> bool:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode == 0

    return run(install) or (run(["apt-get", "update"]) and run(install))


def advice(missing: list[str], debian: bool, sudo: bool) -> str:
    """One line naming the missing libraries and, on Debian/Ubuntu, the command that installs them.

    Args:
        missing: library names not found.
        debian: whether the system is Debian/Ubuntu (apt-get).
        sudo: whether the command needs ``sudo`` (not root).
    """
    what = "Qt's xcb platform plugin needs system libraries that are not installed (" + ", ".join(missing) + ")"
    if not debian:
        return what + "; install them with your system's package manager"
    packages, unknown = debian_packages(missing)
    hints = [f"install them with: {install_command(packages, sudo)}"] if packages else []
    if unknown:
        hints.append("no known package for " + ", ".join(unknown) + " (find it with: apt-file search NAME)")
    return what + "; " + "; ".join(hints)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    """Check (and where possible install) the system libraries; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--log", default=os.devnull, help="file that receives apt-get's output (appended)")
    parser.add_argument("--check", action="store_true", help="only report, install nothing")
    args = parser.parse_args(argv)

    missing = missing_libraries()
    if not missing:
        return 0
    debian = shutil.which("apt-get") is not None and is_debian_like(_read("/etc/os-release"))
    packages, _ = debian_packages(missing)
    if debian and packages and not args.check and os.geteuid() == 0:
        print("braingui: installing system libraries for Qt: " + " ".join(packages), file=sys.stderr)
        with open(args.log, "a", encoding="utf-8") as log:
            start = log.tell()
            installed = apt_install(packages, log)
        if not installed:
            if args.log != os.devnull:
                sys.stderr.write(Path(args.log).read_bytes()[start:].decode(errors="replace"))
            print(f"braingui: apt-get could not install {' '.join(packages)} (log above).", file=sys.stderr)
            return 1
        missing = missing_libraries()
        if not missing:
            return 0
    print("braingui: " + advice(missing, debian, sudo=os.geteuid() != 0), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
