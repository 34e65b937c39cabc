"""Set-up scripts: the system libraries of Qt's xcb platform plugin, and the stamps that skip set-up.

scripts/qt_system_libs.py and scripts/setup_stamp.py are loaded from their files (scripts/ is no package).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, _SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


qsl = _load("qt_system_libs")
stamp = _load("setup_stamp")

# ldd on PySide6 6.12's libqxcb.so on Debian 12 without libxcb-icccm4 / libxcb-keysyms1 (shortened).
LDD_MISSING = """\
\tlinux-vdso.so.1 (0x00007eff1a2e2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007eff1a214000)
\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x00007eff1a184000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007eff1a12a000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007eff1a122000)
\tlibxcb-keysyms.so.1 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007eff1841e000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007eff1a2e4000)
"""

DEBIAN_12 = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nID=debian\n'
MINT = 'NAME="Linux Mint"\nID=linuxmint\nID_LIKE="ubuntu debian"\n'
FEDORA = 'NAME="Fedora Linux"\nID=fedora\n'


# --- ldd output, packages, the one-line advice --------------------------------------------------------------

def test_parse_ldd_lists_each_missing_library_once_in_order():
    assert qsl.parse_ldd(LDD_MISSING) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]


def test_parse_ldd_finds_nothing_when_all_resolve_or_not_dynamic():
    resolved = "\n".join(line for line in LDD_MISSING.splitlines() if "not found" not in line)
    assert qsl.parse_ldd(resolved) == []
    assert qsl.parse_ldd("\tnot a dynamic executable\n") == []


def test_debian_packages_maps_sonames_and_keeps_unknown_apart():
    packages, unknown = qsl.debian_packages(
        ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libgthread-2.0.so.0", "libglib-2.0.so.0", "libfoo.so.3"])
    assert packages == ["libxcb-icccm4", "libxcb-keysyms1", "libglib2.0-0"]  # glib once for both of its libraries
    assert unknown == ["libfoo.so.3"]


@pytest.mark.parametrize(("soname", "package"), [
    ("libxcb-cursor.so.0", "libxcb-cursor0"), ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libxcb-render-util.so.0", "libxcb-render-util0"), ("libEGL.so.1", "libegl1"), ("libGL.so.1", "libgl1"),
    ("libdbus-1.so.3", "libdbus-1-3"), ("libfontconfig.so.1", "libfontconfig1"), ("libX11-xcb.so.1", "libx11-xcb1"),
])
def test_known_debian_package_names(soname, package):
    assert qsl.SONAME_PACKAGES[soname] == package


@pytest.mark.parametrize(("text", "expected"), [(DEBIAN_12, True), (MINT, True), (FEDORA, False), ("", False)])
def test_is_debian_like_reads_id_and_id_like(text, expected):
    assert qsl.is_debian_like(text) is expected


def test_advice_names_the_exact_command_in_one_line():
    line = qsl.advice(["libxcb-icccm.so.4", "libxcb-keysyms.so.1"], debian=True, sudo=True)
    assert "\n" not in line
    assert line.endswith("install them with: sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1")
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in line
    elsewhere = qsl.advice(["libxcb-icccm.so.4"], debian=False, sudo=True)
    assert "apt-get" not in elsewhere and "libxcb-icccm.so.4" in elsewhere
    unknown = qsl.advice(["libfoo.so.3"], debian=True, sudo=False)
    assert "apt-get install" not in unknown and "apt-file search" in unknown


# --- main(): install as root, one line otherwise ------------------------------------------------------------

@pytest.fixture
def debian_box(monkeypatch):
    """A Debian machine with apt-get on which libxcb-icccm / libxcb-keysyms are missing until installed."""
    state = {"missing": ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"], "installed": None, "apt_ok": True}

    def fake_install(packages, log):
        state["installed"] = list(packages)
        log.write("apt-get said no\n" if not state["apt_ok"] else "")
        if state["apt_ok"]:
            state["missing"] = []
        return state["apt_ok"]

    monkeypatch.setattr(qsl, "missing_libraries", lambda: list(state["missing"]))
    monkeypatch.setattr(qsl, "apt_install", fake_install)
    monkeypatch.setattr(qsl, "_read", lambda path: DEBIAN_12)
    monkeypatch.setattr(qsl.shutil, "which", lambda name: "/usr/bin/" + name)
    return state


def test_main_as_user_installs_nothing_and_prints_the_sudo_command(debian_box, monkeypatch, capsys):
    monkeypatch.setattr(qsl.os, "geteuid", lambda: 1000)
    assert qsl.main([]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert debian_box["installed"] is None
    assert len(err) == 1 and err[0].endswith("sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1")


def test_main_as_root_installs_the_packages_then_succeeds(debian_box, monkeypatch, tmp_path):
    monkeypatch.setattr(qsl.os, "geteuid", lambda: 0)
    assert qsl.main(["--log", str(tmp_path / "setup.log")]) == 0
    assert debian_box["installed"] == ["libxcb-icccm4", "libxcb-keysyms1"]


def test_main_as_root_reports_a_failed_apt_get_with_its_output(debian_box, monkeypatch, tmp_path, capsys):
    debian_box["apt_ok"] = False
    monkeypatch.setattr(qsl.os, "geteuid", lambda: 0)
    log = tmp_path / "setup.log"
    log.write_text("pip output before\n")
    assert qsl.main(["--log", str(log)]) == 1
    err = capsys.readouterr().err
    assert "apt-get said no" in err and "pip output before" not in err
    assert "could not install libxcb-icccm4 libxcb-keysyms1" in err


def test_main_check_only_installs_nothing(debian_box, monkeypatch):
    monkeypatch.setattr(qsl.os, "geteuid", lambda: 0)
    assert qsl.main(["--check"]) == 1
    assert debian_box["installed"] is None


# --- this installation --------------------------------------------------------------------------------------

_linux_with_ldd = pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None,
                                     reason="the xcb platform plugin and ldd are Linux-only")


@_linux_with_ldd
def test_every_shared_library_of_the_xcb_platform_plugin_resolves():
    files = qsl.qt_plugin_files()
    assert any(f.name == "libqxcb.so" for f in files), "PySide6's platforms/libqxcb.so not found"
    missing = qsl.ldd_missing(files)
    assert missing == [], f"not found: {missing}; bash scripts/setup.sh installs them (root, Debian/Ubuntu)"


@_linux_with_ldd
def test_the_libraries_vtk_opens_at_run_time_load():
    assert qsl.dlopen_missing(qsl.VTK_RUNTIME_LIBS) == []


@_linux_with_ldd
def test_every_system_library_of_the_xcb_plugin_has_a_known_package():
    """If a new PySide6 links a new system library, the table must learn its package."""
    libc = ("linux-vdso", "ld-linux", "libc.so", "libm.so", "libstdc++", "libgcc_s", "libpthread", "libdl.", "librt.")
    names = set()
    for path in qsl.qt_plugin_files():
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            name, _, where = line.strip().partition(" => ")
            if where and "PySide6" not in where and not name.startswith(libc):
                names.add(name)
    assert names, "ldd listed no system library"
    assert sorted(n for n in names if n not in qsl.SONAME_PACKAGES) == []


# --- stamps -------------------------------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path):
    """A project folder with pyproject.toml, scripts/setup.sh and a venv holding a Python."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["numpy"]\n')
    (tmp_path / "scripts/setup.sh").write_text("echo set-up\n")
    python = stamp.venv_python(tmp_path / ".venv")
    python.parent.mkdir(parents=True)
    python.write_text("")
    return tmp_path


def _inputs(root: Path) -> list[Path]:
    return [root / "pyproject.toml", root / "scripts/setup.sh"]


def test_stamp_is_stale_until_written_then_fresh(project):
    venv = project / ".venv"
    assert not stamp.is_fresh(venv, "packages", _inputs(project))
    stamp.write(venv, "packages", _inputs(project))
    assert stamp.is_fresh(venv, "packages", _inputs(project))
    assert not stamp.is_fresh(venv, "system-libs", _inputs(project))  # each step has its own stamp


def test_stamp_goes_stale_when_pyproject_or_setup_changes(project):
    venv = project / ".venv"
    stamp.write(venv, "packages", _inputs(project))
    original = (project / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(original.replace("numpy", "numpy>=2"))
    assert not stamp.is_fresh(venv, "packages", _inputs(project))
    (project / "pyproject.toml").write_text(original)
    assert stamp.is_fresh(venv, "packages", _inputs(project))
    (project / "scripts/setup.sh").write_text("echo set-up; echo more\n")
    assert not stamp.is_fresh(venv, "packages", _inputs(project))


def test_stamp_is_stale_without_the_venv_python_and_after_clear(project):
    venv = project / ".venv"
    stamp.write(venv, "packages", _inputs(project))
    stamp.clear(venv, "packages")
    assert not stamp.is_fresh(venv, "packages", _inputs(project))
    stamp.write(venv, "packages", _inputs(project))
    stamp.venv_python(venv).unlink()
    assert not stamp.is_fresh(venv, "packages", _inputs(project))


def test_stamp_command_line_exit_codes(project):
    args = [str(project / ".venv"), "packages", *map(str, _inputs(project))]
    assert stamp.main(["fresh", *args]) == 1
    assert stamp.main(["write", *args]) == 0
    assert stamp.main(["fresh", *args]) == 0
    assert stamp.main(["bogus", *args]) == 2
    assert list((project / ".venv").glob("*.tmp")) == []  # the atomic write left no temp file
