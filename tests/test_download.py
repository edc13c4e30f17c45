"""Download code, offline: a local HTTP server, synthetic archives, and the README's encoding.

Nothing here reaches the internet: every URL open goes through ``download.transfer._urlopen``,
which an autouse fixture restricts to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.parse
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from covid_lib.cli.data import add_download_arguments
from covid_lib.data import download as dl
from covid_lib.data.download import transfer
from covid_lib.data.sources import SOURCES, load_source
from covid_lib.paths import DataRootError, resolve_data_root


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def _localhost_only(monkeypatch):
    """Any URL other than the local test server is a test failure, never a network access."""
    real = transfer._urlopen

    def guarded(request, timeout):
        host = urllib.parse.urlsplit(request.full_url).hostname
        if host != "127.0.0.1":
            raise AssertionError(f"test tried to reach {request.full_url}")
        return real(request, timeout)

    monkeypatch.setattr(transfer, "_urlopen", guarded)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=N-`` support (switchable), a slow path and an HTML page."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server API)
        self.server.requests.append((self.path, self.headers.get("Range")))
        if self.path.startswith("/slow/"):
            time.sleep(1.5)
            try:
                self.send_error(503)
            except OSError:
                pass
            return
        if self.path.startswith("/page/"):
            body = b"<html><body>please log in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if match and self.server.ranges:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            body = data[start:]
        else:
            self.send_response(200)
            body = data
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A ThreadingHTTPServer on a free 127.0.0.1 port serving ``root``; shut down afterwards."""
    root = tmp_path_factory.mktemp("www")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.requests, httpd.ranges = [], True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_port}", httpd=httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _shared_header(source: str) -> list[str] | None:
    try:
        manifest = resolve_data_root() / source / "manifest.csv"
    except DataRootError:
        return None
    if not manifest.is_file():
        return None
    with open(manifest, newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh))


def _read_manifest(folder: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames), list(reader)


# ---------------------------------------------------------------------------- synthetic images


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def rgba_bands() -> Image.Image:
    """300x400 RGBA, gray 200 in three vertical bands with alpha 255, 128 and 0."""
    arr = np.zeros((400, 300, 4), dtype=np.uint8)
    arr[..., :3] = 200
    arr[:, :100, 3], arr[:, 100:200, 3], arr[:, 200:, 3] = 255, 128, 0
    return Image.fromarray(arr, mode="RGBA")


def gray16(values=(1000, 1500, 3000), size=(210, 100)) -> Image.Image:
    """16-bit grayscale in three vertical bands of ``values``."""
    arr = np.zeros(size[::-1], dtype=np.uint16)
    third = size[0] // 3
    arr[:, :third], arr[:, third:2 * third], arr[:, 2 * third:] = values
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    return img


def red_rgb(size=(600, 500)) -> Image.Image:
    return Image.new("RGB", size, (255, 0, 0))


def small_gray(size=(200, 150)) -> Image.Image:
    return Image.fromarray(np.tile(np.arange(size[0], dtype=np.uint8), (size[1], 1)), mode="L")


def half_mask(size, side: str, *, value=255) -> Image.Image:
    arr = np.zeros(size[::-1], dtype=np.uint8)
    w = size[0]
    if side == "left":
        arr[20:-20, 10:w // 2 - 10] = value
    else:
        arr[20:-20, w // 2 + 10:w - 10] = value
    return Image.fromarray(arr, mode="L")


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def montgomery_zip(path: Path) -> Path:
    base = "MontgomerySet"
    files = {
        f"{base}/CXR_png/MCUCXR_0001_0.png": _png(small_gray((300, 360))),
        f"{base}/CXR_png/MCUCXR_0002_1.png": _png(gray16(size=(300, 280))),
        f"{base}/NLM-MontgomeryCXRSet-ReadMe.pdf": b"%PDF-1.4 not really",
        "__MACOSX/MontgomerySet/CXR_png/._MCUCXR_0001_0.png": b"\x00\x05\x16\x07junk",
    }
    for stem, size in (("MCUCXR_0001_0", (300, 360)), ("MCUCXR_0002_1", (300, 280))):
        files[f"{base}/ManualMask/leftMask/{stem}.png"] = _png(half_mask(size, "left"))
        files[f"{base}/ManualMask/rightMask/{stem}.png"] = _png(half_mask(size, "right"))
    return _zip(path, files)


COHEN_ROWS = [
    # patientid, finding, view, modality, filename, license, date, location
    ("2", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "a-rgba.png", "CC BY 4.0", "January 22, 2020", "Hanoi, Vietnam"),
    ("2", "COVID-19", "AP Supine", "X-ray", "b-rgb.jpeg", "", "2020", ""),
    ("3", "Pneumonia/Bacterial/Streptococcus", "PA", "X-ray", "c-16bit.png", "CC BY-NC-SA", "", ""),
    ("3", "COVID-19", "Axial", "CT", "d-ct.jpg", "", "", ""),
    ("4", "No Finding", "L", "X-ray", "e-small.png", "", "", ""),
    ("5", "COVID-19", "PA", "X-ray", "missing.jpg", "", "", ""),
    ("6", "COVID-19", "PA", "X-ray", "a-rgba.png", "CC BY 4.0", "", ""),
]


def cohen_files(prefix: str = "covid-chestxray-dataset-master/") -> dict[str, bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["patientid", "offset", "sex", "age", "finding", "RT_PCR_positive", "view", "modality",
                     "date", "location", "folder", "filename", "doi", "url", "license", "clinical_notes"])
    for pid, finding, view, modality, filename, license_, date, location in COHEN_ROWS:
        folder = "volumes" if modality == "CT" else "images"
        writer.writerow([pid, "0", "M", "65", finding, "Y", view, modality, date, location, folder,
                         filename, "", "", license_, "a note, with a comma"])
    return {
        f"{prefix}metadata.csv": buf.getvalue().encode(),
        f"{prefix}images/a-rgba.png": _png(rgba_bands()),
        f"{prefix}images/b-rgb.jpeg": _jpeg(red_rgb()),
        f"{prefix}images/c-16bit.png": _png(gray16(size=(390, 300))),
        f"{prefix}volumes/d-ct.jpg": _jpeg(red_rgb((300, 300))),
        f"{prefix}images/e-small.png": _png(small_gray()),
    }


def darwin_json(name: str, width: int, height: int) -> bytes:
    square = [{"x": 50, "y": 100}, {"x": 250, "y": 100}, {"x": 250, "y": 400}, {"x": 50, "y": 400}]
    return json.dumps({
        "image": {"original_filename": name, "width": width, "height": height},
        "annotations": [{"name": "Lungs", "polygon": {"path": square}},
                        {"name": "Ignore", "polygon": {"path": [{"x": 0, "y": 0}, {"x": 600, "y": 0},
                                                                {"x": 600, "y": 50}]}}],
    }).encode()


def cohen_masks_zip(path: Path) -> Path:
    mask = Image.new("L", (300, 400), 0)
    mask.paste(255, (30, 50, 270, 350))
    return _zip(path, {
        "semantic_masks_v7labs_lungs/a-rgba.png": _png(mask),
        "all-images/b-rgb.json": darwin_json("b-rgb.jpeg", 600, 500),
    })


# -------------------------------------------------------------------------------------- fetch


def test_fetch_downloads_with_progress_off(server, tmp_path, capsys):
    data = bytes(range(256)) * 4000
    (server.root / "blob.bin").write_bytes(data)
    dest = dl.fetch(f"{server.url}/blob.bin", tmp_path / "sub" / "blob.bin", progress=False,
                    sha256=hashlib.sha256(data).hexdigest())
    assert dest == tmp_path / "sub" / "blob.bin"
    assert dest.read_bytes() == data
    assert not list(dest.parent.glob("*.part*"))
    assert "%|" not in capsys.readouterr().err  # no tqdm bar


def test_fetch_checksum_mismatch_raises_and_deletes(server, tmp_path):
    (server.root / "sum.bin").write_bytes(b"x" * 5000)
    dest = tmp_path / "sum.bin"
    with pytest.raises(dl.ChecksumError, match=r"checksum mismatch.*expected sha256 0{64}, got [0-9a-f]{64}"):
        dl.fetch(f"{server.url}/sum.bin", dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not list(tmp_path.iterdir())


def test_fetch_404_is_a_clear_error_without_retries(server, tmp_path):
    before = len(server.httpd.requests)
    with pytest.raises(dl.DownloadError, match=r"HTTP 404 .*/nope\.zip.*--archive"):
        dl.fetch(f"{server.url}/nope.zip", tmp_path / "nope.zip", progress=False, retries=3)
    assert [p for p, _ in server.httpd.requests[before:]] == ["/nope.zip"]
    assert not list(tmp_path.iterdir())


def test_fetch_timeout_is_a_clear_error(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(dl.DownloadError, match=r"timed out after 0\.3 s"):
        dl.fetch(f"{server.url}/slow/x.zip", tmp_path / "x.zip", progress=False, timeout=0.3, retries=0)
    assert time.monotonic() - start < 1.4


def test_fetch_resumes_a_partial_download(server, tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    (server.root / "resume.bin").write_bytes(data)
    url, dest = f"{server.url}/resume.bin", tmp_path / "resume.bin"
    (tmp_path / "resume.bin.part").write_bytes(data[:100_000])
    (tmp_path / "resume.bin.part.url").write_text(url)
    before = len(server.httpd.requests)
    dl.fetch(url, dest, progress=False)
    assert dest.read_bytes() == data
    assert server.httpd.requests[before:] == [("/resume.bin", "bytes=100000-")]


def test_fetch_restarts_when_the_server_ignores_ranges(server, tmp_path):
    data = b"0123456789" * 20_000
    (server.root / "norange.bin").write_bytes(data)
    url, dest = f"{server.url}/norange.bin", tmp_path / "norange.bin"
    (tmp_path / "norange.bin.part").write_bytes(b"garbage" * 1000)
    (tmp_path / "norange.bin.part.url").write_text(url)
    server.httpd.ranges = False
    try:
        dl.fetch(url, dest, progress=False)
    finally:
        server.httpd.ranges = True
    assert dest.read_bytes() == data


def test_fetch_discards_a_part_from_another_url(server, tmp_path):
    data = b"abc" * 10_000
    (server.root / "other.bin").write_bytes(data)
    (tmp_path / "other.bin.part").write_bytes(b"zzz" * 100)
    (tmp_path / "other.bin.part.url").write_text(f"{server.url}/somewhere-else.bin")
    before = len(server.httpd.requests)
    dl.fetch(f"{server.url}/other.bin", tmp_path / "other.bin", progress=False)
    assert (tmp_path / "other.bin").read_bytes() == data
    assert server.httpd.requests[before:] == [("/other.bin", None)]


def test_fetch_rejects_a_login_page(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="web page instead of a file"):
        dl.fetch(f"{server.url}/page/file.zip", tmp_path / "file.zip", progress=False, reject_html=True)


# ------------------------------------------------------------------------------------ extract


@pytest.mark.parametrize("name", ["../evil.txt", "/abs-evil.txt", "ok/../../evil.txt", "C:/evil.txt"])
def test_extract_refuses_zip_path_traversal(tmp_path, name):
    archive = _zip(tmp_path / "bad.zip", {"fine.txt": b"ok", name: b"owned"})
    dest = tmp_path / "out" / "dest"
    with pytest.raises(dl.UnsafeArchiveError, match="refusing member"):
        dl.extract(archive, dest)
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not (dest / "fine.txt").exists()  # checked before anything is written


def _tar(path: Path, members: list[tarfile.TarInfo], payload: bytes = b"owned") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            if info.isfile():
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                tf.addfile(info)
    return path


def test_extract_refuses_tar_traversal_and_outward_links(tmp_path):
    dotdot = tarfile.TarInfo("../../evil.txt")
    with pytest.raises(dl.UnsafeArchiveError, match="refusing member"):
        dl.extract(_tar(tmp_path / "a.tar.gz", [dotdot]), tmp_path / "a")
    link = tarfile.TarInfo("images/passwd")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(dl.UnsafeArchiveError, match="refusing link"):
        dl.extract(_tar(tmp_path / "b.tar.gz", [link]), tmp_path / "b")
    up = tarfile.TarInfo("images/up")
    up.type, up.linkname = tarfile.SYMTYPE, "../../outside"
    with pytest.raises(dl.UnsafeArchiveError, match="refusing link"):
        dl.extract(_tar(tmp_path / "c.tar.gz", [up]), tmp_path / "c")
    assert not (tmp_path / "evil.txt").exists()
    assert not [p for d in "abc" for p in (tmp_path / d).rglob("*")]  # nothing written at all


def test_extract_zip_tar_and_gzip(tmp_path):
    archive = _zip(tmp_path / "ok.zip", {"top/a.csv": b"1", "top/b.png": b"2", "__MACOSX/top/._a.csv": b"x"})
    out = dl.extract(archive, tmp_path / "z", include=["*.csv"])
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["top/a.csv"]
    info = tarfile.TarInfo("images/00000001_000.png")
    out = dl.extract(_tar(tmp_path / "parts.gz", [info], b"png!"), tmp_path / "t")  # tar.gz named .gz, as NIH's
    assert (out / "images" / "00000001_000.png").read_bytes() == b"png!"
    (tmp_path / "table.csv.gz").write_bytes(gzip.compress(b"a,b\n1,2\n"))
    out = dl.extract(tmp_path / "table.csv.gz", tmp_path / "g")
    assert (out / "table.csv").read_bytes() == b"a,b\n1,2\n"
    (tmp_path / "plain.txt").write_text("no archive")
    with pytest.raises(ValueError, match="not a zip, tar or gzip"):
        dl.extract(tmp_path / "plain.txt", tmp_path / "p")


# ----------------------------------------------------------------------------------- encoding


def _encode(tmp_path: Path, img: Image.Image, name: str, fmt: str = "PNG"):
    path = tmp_path / name
    img.save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return dl.encode_image(path)


def test_alpha_is_composited_on_black(tmp_path):
    img, info = _encode(tmp_path, rgba_bands(), "rgba.png")
    assert (img.mode, img.size) == ("L", (256, 341))
    assert info == {"orig_width": 300, "orig_height": 400, "orig_mode": "RGBA", "orig_format": "PNG"}
    arr = np.asarray(img).astype(int)
    row = arr[170]
    assert abs(row[43] - 200) <= 1  # alpha 255: the gray itself
    assert abs(row[128] - 100) <= 1  # alpha 128: 200 * 128 / 255 on black
    assert row[213] == 0  # alpha 0: black, not the hidden gray 200


def test_16bit_is_scaled_by_its_min_max(tmp_path):
    img, info = _encode(tmp_path, gray16(), "g16.png")  # 210x100: no resize
    assert (img.mode, img.size) == ("L", (210, 100))
    assert info["orig_mode"].startswith("I;16") or info["orig_mode"] == "I"
    arr = np.asarray(img)
    assert (arr[50, 10], arr[50, 100], arr[50, 200]) == (0, 64, 255)  # 1000, 1500, 3000 -> 0, 63.75, 255
    flat, _ = _encode(tmp_path, gray16((7, 7, 7)), "flat16.png")
    assert np.asarray(flat).max() == 0  # constant image: no division by zero
    big, _ = _encode(tmp_path, gray16(size=(600, 400)), "big16.png")
    assert big.size == (384, 256) and big.mode == "L"


def test_rgb_to_luma_and_sizes(tmp_path):
    img, info = _encode(tmp_path, red_rgb(), "red.jpg", "JPEG")
    assert img.size == (307, 256) and img.mode == "L"  # 600x500 -> shorter side 256
    assert (info["orig_mode"], info["orig_format"]) == ("RGB", "JPEG")
    assert abs(int(np.asarray(img)[128, 150]) - 76) <= 3  # 0.299 * 255
    tall, _ = _encode(tmp_path, Image.new("L", (300, 700), 9), "tall.png")
    assert tall.size == (256, 597)
    small, info = _encode(tmp_path, small_gray(), "small.png")
    assert small.size == (200, 150)  # never upscaled
    assert np.array_equal(np.asarray(small), np.asarray(small_gray()))
    assert (info["orig_width"], info["orig_height"]) == (200, 150)


def test_encode_mask_binary_same_size_and_union(tmp_path):
    left = tmp_path / "left.png"
    half_mask((400, 300), "left", value=1).save(left)  # a 0/1 mask
    right = half_mask((400, 300), "right")
    mask = dl.encode_mask([left, right], (100, 75))
    arr = np.asarray(mask)
    assert mask.mode == "L" and mask.size == (100, 75)
    assert set(np.unique(arr)) == {0, 255}
    assert arr[37, 25] == 255 and arr[37, 75] == 255 and arr[2, 50] == 0
    with pytest.raises(dl.BuildError, match="cannot decode mask"):
        dl.encode_mask(tmp_path / "absent.png", (10, 10))


# ------------------------------------------------------------------------ sources, end to end


@pytest.mark.parametrize("source", list(dl.MANIFEST_COLUMNS))
def test_manifest_columns_match_the_working_copy(source):
    header = _shared_header(source)
    if header is None:
        pytest.skip(f"no {source}/manifest.csv in the data root")
    assert list(dl.MANIFEST_COLUMNS[source]) == header


def test_registry_and_sources_info():
    assert set(dl.REGISTRY) == set(SOURCES) == set(dl.SOURCES_INFO) == set(dl.BUILDERS)
    for name, info in dl.SOURCES_INFO.items():
        assert all(info[k] for k in ("title", "url", "license", "citation", "notes", "downloads")), name
    for info in dl.REGISTRY.values():
        for res in info.resources:
            assert res.urls or res.manual, (info.name, res.key)
            assert all(u.startswith("https://") for u in res.urls)
    kaggle = {(i.name, r.key) for i in dl.REGISTRY.values() for r in i.resources if not r.urls}
    assert kaggle == {("nih", "rsna"), ("shenzhen", "masks")}
    assert all("kaggle" in dl.REGISTRY[n].resource(k).manual.lower() for n, k in kaggle)
    assert "openi.nlm.nih.gov" in dl.REGISTRY["montgomery"].resources[0].urls[0]
    assert len(dl.sources_table()) == len(dl.REGISTRY)


def _serve(monkeypatch, server, name: str, urls_by_key: dict[str, tuple[str, ...]]):
    info = dl.REGISTRY[name]
    resources = tuple(dataclasses.replace(r, urls=urls_by_key.get(r.key, r.urls)) for r in info.resources)
    monkeypatch.setitem(dl.REGISTRY, name, dataclasses.replace(info, resources=resources))


def test_download_montgomery_over_http(server, tmp_path, monkeypatch):
    montgomery_zip(server.root / "NLM-MontgomeryCXRSet.zip")
    # the first URL is dead: the mirror must be used
    _serve(monkeypatch, server, "montgomery",
           {"archive": (f"{server.url}/gone/NLM-MontgomeryCXRSet.zip", f"{server.url}/NLM-MontgomeryCXRSet.zip")})
    root = tmp_path / "data"
    out = dl.download_source("montgomery", root, progress=False)
    assert out == root / "montgomery"
    header, rows = _read_manifest(out)
    assert header == list(dl.MANIFEST_COLUMNS["montgomery"])
    if _shared_header("montgomery"):
        assert header == _shared_header("montgomery")
    assert [(r["image_id"], r["patient_id"], r["tb"], r["view"]) for r in rows] == [
        ("MCUCXR_0001_0", "montgomery:0001", "0", "PA"), ("MCUCXR_0002_1", "montgomery:0002", "1", "PA")]
    assert rows[0]["origin"].endswith(":MontgomerySet/CXR_png/MCUCXR_0001_0.png")
    assert (rows[0]["width"], rows[0]["height"]) == ("256", "307")
    assert (rows[1]["orig_width"], rows[1]["height"]) == ("300", "256")
    for row in rows:
        img, mask = Image.open(out / row["path"]), Image.open(out / row["mask_path"])
        assert img.mode == "L" and min(img.size) == 256
        assert mask.mode == "L" and mask.size == img.size
        arr = np.asarray(mask)
        assert set(np.unique(arr)) == {0, 255}
        mid = arr.shape[0] // 2
        assert arr[mid, img.size[0] // 4] == 255 and arr[mid, 3 * img.size[0] // 4] == 255  # left + right merged
    assert not (root / ".raw").exists()  # raw files removed without keep_raw
    loaded = load_source("montgomery", root)
    assert len(loaded.manifest) == 2 and loaded.exclusions.empty

    # present: not rebuilt without force, and nothing downloaded
    stamp, before = (out / "manifest.csv").stat().st_mtime_ns, len(server.httpd.requests)
    dl.download_source("montgomery", root, progress=False)
    assert (out / "manifest.csv").stat().st_mtime_ns == stamp and len(server.httpd.requests) == before
    dl.download_source("montgomery", root, progress=False, force=True, keep_raw=True)
    assert len(server.httpd.requests) > before
    assert (root / ".raw" / "montgomery" / "downloads" / "NLM-MontgomeryCXRSet.zip").is_file()


def test_download_cohen_from_archives(tmp_path):
    repo_zip = _zip(tmp_path / "covid-chestxray-dataset-master.zip", cohen_files())
    masks_zip = cohen_masks_zip(tmp_path / "semantic_masks_v7labs_lungs.zip")
    root = tmp_path / "data"
    out = dl.download_source("cohen", root, archive=[masks_zip, repo_zip], progress=False)
    header, rows = _read_manifest(out)
    assert header == list(dl.MANIFEST_COLUMNS["cohen"])
    if _shared_header("cohen"):
        assert header == _shared_header("cohen")
    by_id = {}
    for row in rows:
        by_id.setdefault(row["image_id"], []).append(row)
    assert sorted(by_id) == ["a-rgba", "b-rgb", "c-16bit", "e-small"]  # no CT row, no missing file
    assert [r["patient_id"] for r in by_id["a-rgba"]] == ["cohen:2", "cohen:6"]  # listed twice, kept twice
    covid = {k: v[0]["covid"] for k, v in by_id.items()}
    assert covid == {"a-rgba": "1", "b-rgb": "1", "c-16bit": "0", "e-small": "0"}
    a, b = by_id["a-rgba"][0], by_id["b-rgb"][0]
    assert (a["view"], a["location"], a["license"], a["first_seen"]) == ("PA", "Hanoi, Vietnam", "CC BY 4.0", "")
    assert a["origin"] == "github ieee8023/covid-chestxray-dataset@master:images/a-rgba.png"
    assert (a["orig_mode"], a["orig_format"], b["orig_mode"], b["orig_format"]) == ("RGBA", "PNG", "RGB", "JPEG")
    assert by_id["e-small"][0]["view"] == "L" and by_id["e-small"][0]["width"] == "200"
    assert not by_id["c-16bit"][0]["mask_path"] and not by_id["e-small"][0]["mask_path"]
    for row in (a, b):
        img, mask = Image.open(out / row["path"]), np.asarray(Image.open(out / row["mask_path"]))
        assert mask.shape == img.size[::-1] and set(np.unique(mask)) == {0, 255}
    darwin = np.asarray(Image.open(out / b["mask_path"]))  # polygon x 50..250, y 100..400 of 600x500
    assert darwin[128, 64] == 255 and darwin[128, 200] == 0 and darwin[10, 10] == 0
    loaded = load_source("cohen", root)
    assert set(loaded.exclusions["reason"].str.split(":").str[0]) == {"duplicate row"}
    assert len(loaded.manifest) == 4


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_first_seen_from_a_git_clone(server, tmp_path, monkeypatch):
    _serve(monkeypatch, server, "cohen", {"masks": (f"{server.url}/no-masks.zip",)})  # optional: 404 is fine
    repo = tmp_path / "covid-chestxray-dataset"
    files = cohen_files(prefix="")

    def git(*args, date="2020-03-05T12:00:00"):
        env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date, "HOME": str(tmp_path),
               "GIT_CONFIG_NOSYSTEM": "1"}
        subprocess.run([shutil.which("git"), "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org",
                        "-c", "commit.gpgsign=false", *args], check=True, capture_output=True, env=env)

    repo.mkdir()
    git("init", "-q")
    for name, data in files.items():
        if name != "images/e-small.png":
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_bytes(data)
    git("add", "-A")
    git("commit", "-q", "-m", "first")
    (repo / "images/e-small.png").write_bytes(files["images/e-small.png"])
    git("add", "-A", date="2020-04-09T12:00:00")
    git("commit", "-q", "-m", "second", date="2020-04-09T12:00:00")
    assert dl.git_first_seen(repo, "images/e-small.png") == "2020-04-09"
    seen = dl.cohen_first_seen(repo)
    assert seen["a-rgba.png"] == "2020-03-05" and seen["e-small.png"] == "2020-04-09"
    out = dl.download_source("cohen", tmp_path / "data", archive=repo, progress=False)
    _, rows = _read_manifest(out)
    assert {r["image_id"]: r["first_seen"] for r in rows} == {
        "a-rgba": "2020-03-05", "b-rgb": "2020-03-05", "c-16bit": "2020-03-05", "e-small": "2020-04-09"}
    for row in rows:
        row["first_seen"] = ""
    with open(out / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=dl.MANIFEST_COLUMNS["cohen"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    assert dl.fill_first_seen(out / "manifest.csv", repo) == len(rows)
    assert _read_manifest(out)[1][-1]["first_seen"] == "2020-03-05"


def test_shenzhen_masks_are_optional_and_taken_from_an_archive(tmp_path, caplog):
    images = _zip(tmp_path / "ChinaSet_AllFiles.zip", {
        "ChinaSet_AllFiles/CXR_png/CHNCXR_0001_0.png": _png(small_gray((300, 300))),
        "ChinaSet_AllFiles/CXR_png/CHNCXR_0002_1.png": _png(red_rgb((280, 300))),
    })
    root = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger=dl.log.name):
        out = dl.download_source("shenzhen", root, archive=images, progress=False)
    assert "yoctoman/shcxr-lung-mask" in caplog.text and "--archive" in caplog.text
    _, rows = _read_manifest(out)
    assert [(r["tb"], r["mask_path"]) for r in rows] == [("0", ""), ("1", "")]
    masks = _zip(tmp_path / "shcxr-lung-mask.zip", {"mask/CHNCXR_0001_0_mask.png": _png(half_mask((300, 300), "left"))})
    out = dl.download_source("shenzhen", root, archive=[images, masks], progress=False, force=True)
    _, rows = _read_manifest(out)
    assert [r["mask_path"] for r in rows] == ["masks/CHNCXR_0001_0.png", ""]
    assert Image.open(out / rows[0]["mask_path"]).size == (256, 256)
    assert len(load_source("shenzhen", root).manifest) == 2


def test_required_part_without_url_says_how_to_get_it(tmp_path, monkeypatch):
    info = dl.REGISTRY["kermany"]
    res = dataclasses.replace(info.resources[0], urls=())
    monkeypatch.setitem(dl.REGISTRY, "kermany", dataclasses.replace(info, resources=(res,)))
    with pytest.raises(dl.ManualDownloadRequired, match=r"ChestXRay2017\.zip cannot be downloaded.*mendeley.*--archive"):
        dl.download_source("kermany", tmp_path, progress=False)


def test_all_urls_failing_lists_them(server, tmp_path, monkeypatch):
    _serve(monkeypatch, server, "hannover", {"repo": (f"{server.url}/a.zip", f"{server.url}/b.zip")})
    with pytest.raises(dl.DownloadError, match=r"(?s)could not download.*/a\.zip: HTTP 404.*/b\.zip: HTTP 404.*--archive"):
        dl.download_source("hannover", tmp_path, progress=False)
    assert not (tmp_path / "hannover").exists()


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_build_hannover_kermany_nih_from_extracted_files(tmp_path):
    raw, out_root = tmp_path / "raw", tmp_path / "data"
    tiny = _png(small_gray((64, 48)))
    _tree(raw / "hannover", {
        "covid-19-image-repository-master/data.csv":
            b"patient_id,image_id,sex,age,admission_offset,modality,projection\n"
            b"042f06a9,b343e657,m,,-3.0,CR,ap\n042f06a9,c9280a30,m,,0,DX,pa\n",
        "covid-19-image-repository-master/png/b343e657.png": tiny,
        "covid-19-image-repository-master/png/c9280a30.png": tiny,
    })
    _tree(raw / "kermany", {
        "chest_xray/train/NORMAL/IM-0115-0001.jpeg": _jpeg(small_gray((64, 48))),
        "chest_xray/train/PNEUMONIA/person1_bacteria_1.jpeg": _jpeg(small_gray((64, 48))),
        "chest_xray/test/PNEUMONIA/person100_virus_184.jpeg": _jpeg(small_gray((64, 48))),
        "__MACOSX/chest_xray/train/NORMAL/._IM-0115-0001.jpeg": b"junk",
    })
    rsna_map = json.dumps([{"img_id": "00000002_000.png", "subset_img_id": "rsna-2"}]).encode()
    _tree(raw / "nih", {
        "labels/Data_Entry_2017_v2020.csv.gz": gzip.compress(
            b"Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
            b"OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
            b"00000001_000.png,No Finding,0,1,58,M,PA,64,48,0.14,0.14\n"
            b"00000002_000.png,Infiltration|Pneumonia,0,2,81,F,AP,64,48,0.14,0.14\n"),
        "images_001/images/00000001_000.png": tiny,
        "images_001/images/00000002_000.png": _png(rgba_bands().resize((64, 48))),
        "images_001/images/00000003_000.png": tiny,  # not in the label table: left out
        "rsna/stage_2_train_labels.csv": b"patientId,x,y,width,height,Target\nrsna-2,1,2,3,4,1\nrsna-2,,,,,0\n",
        "rsna/stage_2_detailed_class_info.csv": b"patientId,class\nrsna-2,Lung Opacity\n",
        "rsna_mapping/pneumonia-challenge-dataset-mappings_2018.json": rsna_map,
    })
    expected = {
        "hannover": [{"image_id": "b343e657", "patient_id": "hannover:042f06a9", "covid": "1", "view": "AP",
                      "admission_offset": "-3", "modality": "CR"},
                     {"image_id": "c9280a30", "view": "PA", "admission_offset": "0"}],
        "kermany": [{"image_id": "test-person100_virus_184", "patient_id": "kermany:person100",
                     "kermany_class": "virus", "pneumonia": "1", "kermany_split": "test"},
                    {"image_id": "train-IM-0115-0001", "patient_id": "kermany:IM-0115", "kermany_class": "normal",
                     "pneumonia": "0", "kermany_split": "train"},
                    {"image_id": "train-person1_bacteria_1", "kermany_class": "bacteria", "kermany_split": "train"}],
        "nih": [{"image_id": "00000001_000", "patient_id": "nih:1", "pneumonia": "0", "age": "58", "rsna_target": ""},
                {"image_id": "00000002_000", "patient_id": "nih:2", "pneumonia": "1", "view": "AP", "sex": "F",
                 "rsna_patient_id": "rsna-2", "rsna_class": "Lung Opacity", "rsna_target": "1",
                 "orig_mode": "RGBA"}],
    }
    for source, want in expected.items():
        out = dl.BUILDERS[source](raw / source, out_root, progress=False)
        header, rows = _read_manifest(out)
        assert header == list(dl.MANIFEST_COLUMNS[source])
        if _shared_header(source):
            assert header == _shared_header(source)
        rows = sorted(rows, key=lambda r: r["image_id"])
        assert len(rows) == len(want), source
        for row, w in zip(rows, want):
            assert {k: row[k] for k in w} == w, source
        loaded = load_source(source, out_root)
        assert len(loaded.manifest) == len(want) and loaded.exclusions.empty, source
    _, nih_rows = _read_manifest(out_root / "nih")
    assert nih_rows[0]["origin"] == "nih ChestX-ray14:images/00000001_000.png"


def test_build_restricted_to_image_ids(tmp_path):
    raw = tmp_path / "raw"
    dl.extract(montgomery_zip(tmp_path / "m.zip"), raw)
    out = dl.build_montgomery(raw, tmp_path / "data", progress=False, image_ids={"MCUCXR_0002_1"})
    assert [r["image_id"] for r in _read_manifest(out)[1]] == ["MCUCXR_0002_1"]
    with pytest.raises(dl.BuildError, match="none of the requested image ids"):
        dl.build_montgomery(raw, tmp_path / "other", progress=False, image_ids={"nope"})
    with pytest.raises(dl.BuildError, match="no Cohen metadata.csv"):
        dl.build_cohen(raw, tmp_path / "data", progress=False)


# ------------------------------------------------------------------------------------------ CLI


def test_cli_hooks(tmp_path, capsys):
    archive = montgomery_zip(tmp_path / "NLM-MontgomeryCXRSet.zip")
    ids = tmp_path / "ids.csv"
    ids.write_text("image_id,path\nMCUCXR_0001_0,x\n")
    parser = add_download_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["montgomery", "--root", str(tmp_path / "data"), "--archive", str(archive),
                              "--ids-from", str(ids), "--no-progress"])
    assert args.progress is False
    assert args.func(args) == 0
    assert [r["image_id"] for r in _read_manifest(tmp_path / "data" / "montgomery")[1]] == ["MCUCXR_0001_0"]
    assert "montgomery:" in capsys.readouterr().out
    stray = tmp_path / "whatever.bin"
    stray.write_bytes(b"?")
    args = parser.parse_args(["all", "--data-root", str(tmp_path / "data"), "--archive", str(stray)])
    assert args.root == tmp_path / "data"  # --data-root, as every other command names the data root
    assert dl.run_download(args) == 2
    assert "unrecognised" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["nosuchsource", "--root", "x"])
