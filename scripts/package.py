"""Packages for offline sites, made from the PyInstaller bundle (`make dist`): a Debian package and a plain
archive with install.sh, with versioned names and a SHA256SUMS file beside them.

    python scripts/package.py [--bundle dist/watchkeeper] [--out dist/packages]
                              [--deb-version 0.1.0-1] [--only deb|tar]

First the bundle is checked: every library that any program or plugin in it needs is either in the bundle or
one of the system libraries below, each provided by a package the .deb declares. Anything else stops the
build with the file and the library named: a console that cannot start at a site is found here, not there.

The .deb is assembled as a staging tree and built with dpkg-deb (`--root-owner-group`, so no fakeroot);
maintainer scripts, the admin wrapper, the desktop entry and install.sh are in scripts/packaging/, the
systemd unit and the default settings file in resources/systemd/. Internals: docs/packaging.md.

Only Linux packages are built: the bundle is a Linux build, and nothing here makes a Windows or macOS one.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "scripts" / "packaging"
SYSTEMD = ROOT / "resources" / "systemd"
ICON_SVG = ROOT / "resources" / "icons" / "watchkeeper.svg"
ICON_SIZES = (32, 48, 64, 128, 256)
PREFIX = "opt/watchkeeper"
MAINTAINER = "Watchkeeper maintainers <maintainers@watchkeeper.invalid>"


@dataclass(frozen=True)
class SystemLibrary:
    package: str  # the Debian package (alternatives with " | ") that provides it
    needed_by: (
        str  # "everything" (Depends) or "console" (Recommends: a server without a desktop does without)
    )
    why: str  # why it comes from the system and not the bundle


# Libraries the bundle takes from the system. Each one is on every Debian 12 and Ubuntu 24.04 desktop.
SYSTEM_LIBRARIES: dict[str, SystemLibrary] = {
    **{
        name: SystemLibrary("libc6 (>= 2.36)", "everything", "the C library must be the system's own")
        for name in (
            "libc.so.6",
            "libm.so.6",
            "libdl.so.2",
            "libpthread.so.0",
            "librt.so.1",
            "libresolv.so.2",
            "libutil.so.1",
            "ld-linux-x86-64.so.2",
            "ld-linux-aarch64.so.1",
        )
    },
    "libstdc++.so.6": SystemLibrary(
        "libstdc++6 (>= 12)",
        "everything",
        "a bundled older copy would refuse the system's newer graphics drivers (GLIBCXX version errors)",
    ),
    "libgcc_s.so.1": SystemLibrary("libgcc-s1", "everything", "goes with the system's C++ runtime"),
    "libEGL.so.1": SystemLibrary("libegl1", "console", "dispatches to the machine's own graphics driver"),
    "libGL.so.1": SystemLibrary("libgl1", "console", "dispatches to the machine's own graphics driver"),
    "libGLX.so.0": SystemLibrary("libglx0", "console", "part of the system's OpenGL dispatch (libgl1)"),
    "libGLdispatch.so.0": SystemLibrary(
        "libglvnd0", "console", "part of the system's OpenGL dispatch (libgl1)"
    ),
    "libdrm.so.2": SystemLibrary("libdrm2", "console", "talks to the kernel's graphics driver"),
    "libxcb.so.1": SystemLibrary(
        "libxcb1", "console", "the X connection library must match the system's X libraries"
    ),
    "libwayland-client.so.0": SystemLibrary(
        "libwayland-client0", "console", "the desktop's Wayland protocol"
    ),
    "libwayland-cursor.so.0": SystemLibrary("libwayland-cursor0", "console", "the desktop's cursor theme"),
    "libwayland-egl.so.1": SystemLibrary("libwayland-egl1", "console", "the graphics driver's Wayland side"),
    "libgtk-3.so.0": SystemLibrary(
        "libgtk-3-0 | libgtk-3-0t64", "console", "native look and file dialogs on GTK desktops (optional)"
    ),
    "libgdk-3.so.0": SystemLibrary(
        "libgtk-3-0 | libgtk-3-0t64", "console", "native look and file dialogs on GTK desktops (optional)"
    ),
}
# Not libraries, but read at run time from the system: users and the service, fonts, keyboard maps, CAs.
OTHER_DEPENDS = ["passwd"]  # useradd/groupadd for the service user
OTHER_RECOMMENDS = [
    "fontconfig-config",  # the font configuration the bundled fontconfig reads
    "fonts-dejavu-core | fonts-liberation2 | fonts-noto-core",  # at least one font
    "xkb-data",  # keyboard layouts for typing in the console
    "ca-certificates",  # certificates for TLS to Twilio and mail servers
]


class PackagingError(Exception):
    pass


# -- the bundle -----------------------------------------------------------------------------------------------


def read_build_info(bundle: Path) -> dict[str, str]:
    found = list(bundle.glob("*/engine/build-info.json")) + list(bundle.glob("engine/build-info.json"))
    if not found:
        raise PackagingError(f"{bundle}: no engine/build-info.json; is this a bundle made by `make dist`?")
    data = json.loads(found[0].read_text(encoding="utf-8"))
    return {k: str(v) for k, v in data.items()}


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def _needed(path: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", "-W", str(path)], capture_output=True, text=True, check=False)
    names = []
    for line in out.stdout.splitlines():
        if "(NEEDED)" in line and "[" in line:
            names.append(line.split("[", 1)[1].rstrip("]").strip())
    return names


def unresolved_libraries(bundle: Path) -> dict[str, list[str]]:
    """{library: [files that need it]} for every library neither in the bundle nor in SYSTEM_LIBRARIES."""
    if shutil.which("readelf") is None:
        raise PackagingError("readelf (binutils) is needed to check the bundle; PyInstaller needs it too")
    files = [p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()]
    bundled = {p.name for p in bundle.rglob("*")}
    missing: dict[str, list[str]] = {}
    for path in files:
        if not _is_elf(path):
            continue
        for name in _needed(path):
            if name not in bundled and name not in SYSTEM_LIBRARIES:
                missing.setdefault(name, []).append(str(path.relative_to(bundle)))
    return missing


def check_bundle(bundle: Path) -> None:
    if not (bundle / "watchkeeper").is_file():
        raise PackagingError(f"no bundle at {bundle}: run `make dist` first")
    missing = unresolved_libraries(bundle)
    if missing:
        lines = [
            f"  {lib}: needed by {', '.join(sorted(users)[:3])}" for lib, users in sorted(missing.items())
        ]
        raise PackagingError(
            "the bundle needs libraries that are neither in it nor declared as system libraries in "
            "scripts/package.py (leave the plugin out in build.spec, or declare the library):\n"
            + "\n".join(lines)
        )


# -- the files both packages install ----------------------------------------------------------------------------


def render_icons(dest: Path) -> list[Path]:
    """hicolor icons: the SVG, and PNGs in the usual sizes (menus that do not draw SVG), drawn with Qt."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        from PySide6.QtCore import Qt
        from PySide6.QtGui import QGuiApplication, QImage, QPainter
        from PySide6.QtSvg import QSvgRenderer
    except ImportError as exc:
        raise PackagingError(
            f"the icons are drawn with PySide6 (run from the project's .venv): {exc}"
        ) from None
    app = QGuiApplication.instance() or QGuiApplication([])
    renderer = QSvgRenderer(str(ICON_SVG))
    made = []
    scalable = dest / "scalable" / "apps" / "watchkeeper.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ICON_SVG, scalable)
    made.append(scalable)
    for size in ICON_SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        path = dest / f"{size}x{size}" / "apps" / "watchkeeper.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(path)):
            raise PackagingError(f"could not write {path}")
        made.append(path)
    del app
    return made


def _copy(src: Path, dest: Path, mode: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    os.chmod(dest, mode)


def _copy_bundle(bundle: Path, dest: Path) -> None:
    shutil.copytree(bundle, dest, symlinks=True)


def _normalise_modes(tree: Path) -> None:
    """Directories 0755, executables 0755, other files 0644 (whatever the build machine's umask was)."""
    for path in [tree, *tree.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        if path.is_dir() or mode & stat.S_IXUSR:
            os.chmod(path, 0o755)
        else:
            os.chmod(path, 0o644)


def _tree_size_kib(tree: Path) -> int:
    total = sum(p.lstat().st_size for p in tree.rglob("*") if not p.is_dir())
    return (total + 1023) // 1024


# -- .deb -------------------------------------------------------------------------------------------------------


def deb_architecture() -> str:
    found = shutil.which("dpkg")
    if found is None:
        raise PackagingError("dpkg-deb is needed for the Debian package (Debian or Ubuntu build machine)")
    return subprocess.run(
        [found, "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _unique(items: list[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def depends_and_recommends() -> tuple[list[str], list[str]]:
    depends = _unique([lib.package for lib in SYSTEM_LIBRARIES.values() if lib.needed_by == "everything"])
    recommends = _unique([lib.package for lib in SYSTEM_LIBRARIES.values() if lib.needed_by == "console"])
    return depends + OTHER_DEPENDS, recommends + OTHER_RECOMMENDS


def control_file(version: str, arch: str, installed_kib: int) -> str:
    depends, recommends = depends_and_recommends()
    return (
        "Package: watchkeeper\n"
        f"Version: {version}\n"
        f"Architecture: {arch}\n"
        f"Maintainer: {MAINTAINER}\n"
        f"Installed-Size: {installed_kib}\n"
        f"Depends: {', '.join(depends)}\n"
        f"Recommends: {', '.join(recommends)}\n"
        "Section: admin\n"
        "Priority: optional\n"
        "Description: escalation console and paging engine for dispatch centres\n"
        " Watchkeeper pages the right people about incidents, level by level, over SMS,\n"
        " WhatsApp and voice (Twilio), e-mail, webhooks and console pop-ups, watches SLA\n"
        " deadlines and on-call rotas, and shows operators a live board.\n"
        " .\n"
        " This package carries the console and the `watchkeeper serve` service (a\n"
        " systemd unit, installed disabled, running as the system user watchkeeper with\n"
        " its data in /var/lib/watchkeeper and its settings in /etc/watchkeeper).\n"
        " Everything else it needs is inside /opt/watchkeeper: it installs with no network.\n"
    )


def _changelog(version: str, built_at: str) -> bytes:
    when = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(_epoch(built_at)))
    text = (
        f"watchkeeper ({version}) stable; urgency=medium\n\n"
        "  * Built from the Watchkeeper bundle; see /usr/share/doc/watchkeeper/README.md.\n\n"
        f" -- {MAINTAINER}  {when}\n"
    )
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        gz.write(text.encode())
    return buffer.getvalue()


def _epoch(built_at: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(built_at).timestamp()


COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: watchkeeper
Comment: /opt/watchkeeper is a PyInstaller bundle: Python, Qt for Python (PySide6, LGPL-3.0) and the
 Python packages Watchkeeper uses, each under its own licence (the *.dist-info folders in
 /opt/watchkeeper/_internal carry their metadata). Watchkeeper's own licence is not declared yet.

Files: *
Copyright: the Watchkeeper authors
License: not declared
"""


def stage_common(tree: Path, bundle: Path, *, bin_dir: str, sbin_dir: str, share: str, unit_dir: str) -> None:
    """What the .deb and install.sh both put in place (relative to `tree`)."""
    _copy_bundle(bundle, tree / PREFIX)
    _copy(PACKAGING / "site-functions.sh", tree / PREFIX / "lib" / "site-functions.sh", 0o644)
    _copy(PACKAGING / "watchkeeper-admin", tree / PREFIX / "bin" / "watchkeeper-admin", 0o755)
    (tree / bin_dir).mkdir(parents=True, exist_ok=True)
    (tree / sbin_dir).mkdir(parents=True, exist_ok=True)
    os.symlink(f"/{PREFIX}/watchkeeper", tree / bin_dir / "watchkeeper")
    os.symlink(f"/{PREFIX}/bin/watchkeeper-admin", tree / sbin_dir / "watchkeeper-admin")
    _copy(SYSTEMD / "watchkeeper.service", tree / unit_dir / "watchkeeper.service", 0o644)
    _copy(PACKAGING / "watchkeeper.desktop", tree / share / "applications" / "watchkeeper.desktop", 0o644)
    render_icons(tree / share / "icons" / "hicolor")
    for doc in (ROOT / "README.md", ROOT / "docs" / "operations.md"):
        _copy(doc, tree / share / "doc" / "watchkeeper" / doc.name, 0o644)


def build_deb(bundle: Path, out: Path, version: str, built_at: str, compression: str = "xz") -> Path:
    if shutil.which("dpkg-deb") is None:
        raise PackagingError("dpkg-deb is needed for the Debian package (Debian or Ubuntu build machine)")
    arch = deb_architecture()
    with tempfile.TemporaryDirectory(prefix="watchkeeper-deb-") as scratch:
        tree = Path(scratch) / "root"
        stage_common(
            tree,
            bundle,
            bin_dir="usr/bin",
            sbin_dir="usr/sbin",
            share="usr/share",
            unit_dir="usr/lib/systemd/system",
        )
        _copy(SYSTEMD / "watchkeeper.env", tree / "etc" / "watchkeeper" / "watchkeeper.env", 0o640)
        docs = tree / "usr" / "share" / "doc" / "watchkeeper"
        (docs / "copyright").write_text(COPYRIGHT, encoding="utf-8")
        (docs / "changelog.Debian.gz").write_bytes(_changelog(version, built_at))
        _normalise_modes(tree)
        os.chmod(tree / "etc" / "watchkeeper" / "watchkeeper.env", 0o640)  # secrets: postinst sets the group
        control = tree / "DEBIAN"
        control.mkdir()
        for script in ("preinst", "postinst", "prerm", "postrm"):
            _copy(PACKAGING / "debian" / script, control / script, 0o755)
        (control / "conffiles").write_text("/etc/watchkeeper/watchkeeper.env\n", encoding="utf-8")
        (control / "control").write_text(control_file(version, arch, _tree_size_kib(tree)), encoding="utf-8")
        (control / "md5sums").write_text(_md5sums(tree), encoding="utf-8")
        os.chmod(control, 0o755)
        for name in ("control", "conffiles", "md5sums"):
            os.chmod(control / name, 0o644)
        deb = out / f"watchkeeper_{version}_{arch}.deb"
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(int(_epoch(built_at))))
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(tree), str(deb)],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    return deb


def _md5sums(tree: Path) -> str:
    lines = []
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree)
        if rel.parts[0] in {"DEBIAN", "etc"} or path.is_symlink() or not path.is_file():
            continue  # conffiles are tracked by dpkg itself
        digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        lines.append(f"{digest}  {rel.as_posix()}\n")
    return "".join(lines)


# -- .tar.gz ------------------------------------------------------------------------------------------------------


def tar_platform() -> str:
    machine = platform.machine().lower() or "unknown"
    return f"linux-{machine}"


def build_tarball(bundle: Path, out: Path, upstream: str, built_at: str, level: int = 6) -> Path:
    name = f"watchkeeper-{upstream}-{tar_platform()}"
    with tempfile.TemporaryDirectory(prefix="watchkeeper-tar-") as scratch:
        top = Path(scratch) / name
        _copy_bundle(bundle, top / "watchkeeper")
        system = top / "system"
        for src, mode in (
            (PACKAGING / "site-functions.sh", 0o644),
            (PACKAGING / "watchkeeper-admin", 0o755),
            (PACKAGING / "watchkeeper.desktop", 0o644),
            (SYSTEMD / "watchkeeper.service", 0o644),
            (SYSTEMD / "watchkeeper.env", 0o640),
        ):
            _copy(src, system / src.name, mode)
        render_icons(system / "icons")
        for doc in (ROOT / "README.md", ROOT / "docs" / "operations.md"):
            _copy(doc, top / "doc" / doc.name, 0o644)
        _copy(PACKAGING / "install.sh", top / "install.sh", 0o755)
        _normalise_modes(top)
        os.chmod(system / "watchkeeper.env", 0o640)
        archive = out / f"{name}.tar.gz"
        mtime = int(_epoch(built_at))

        def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = mtime
            return info

        with tarfile.open(archive, "w:gz", compresslevel=level) as tar:
            tar.add(top, arcname=name, filter=owned_by_root)
    return archive


# -- checksums and the command line -------------------------------------------------------------------------------


def write_checksums(out: Path, artefacts: list[Path]) -> Path:
    lines = []
    for path in artefacts:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        lines.append(f"{digest.hexdigest()}  {path.name}\n")
    sums = out / "SHA256SUMS"
    sums.write_text("".join(lines), encoding="utf-8")
    return sums


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "watchkeeper")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "packages")
    parser.add_argument(
        "--deb-version",
        help="the Debian package version (default: the bundle's version with Debian revision 1, e.g. 0.1.0-1)",
    )
    parser.add_argument("--only", choices=["deb", "tar"], help="build one of the two")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="for local test builds: an uncompressed .deb and the archive at gzip level 1 (larger files)",
    )
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print(
            "package.py builds Linux packages only; no Windows or macOS package is built yet", file=sys.stderr
        )
        return 1
    try:
        bundle = args.bundle.resolve()
        info = read_build_info(bundle)
        check_bundle(bundle)
        out = args.out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        # The folder holds one build's artefacts: those of the kind built now replace any older ones.
        if args.only in (None, "deb"):
            for old in out.glob("watchkeeper_*.deb"):
                old.unlink()
        if args.only in (None, "tar"):
            for old in out.glob("watchkeeper-*.tar.gz"):
                old.unlink()
        upstream = info["version"]
        artefacts = []
        started = time.monotonic()
        if args.only in (None, "deb"):
            version = args.deb_version or f"{upstream}-1"
            compression = "none" if args.fast else "xz"
            artefacts.append(build_deb(bundle, out, version, info["built_at"], compression))
        if args.only in (None, "tar"):
            level = 1 if args.fast else 6
            artefacts.append(build_tarball(bundle, out, upstream, info["built_at"], level))
        sums = write_checksums(
            out, sorted([*out.glob("watchkeeper_*.deb"), *out.glob("watchkeeper-*.tar.gz")])
        )
    except (PackagingError, subprocess.CalledProcessError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in artefacts:
        print(f"{path}  {path.stat().st_size / 1e6:.1f} MB")
    print(f"{sums}  ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
