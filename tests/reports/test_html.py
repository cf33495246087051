"""The HTML report: self-contained (nothing fetched), and drawn by a real browser with its charts.

Rendered in headless Chromium (Debian `chromium`); skipped where it is missing, except in CI
(JOBCARBON_REQUIRE_SLURM=1), where .ci/run installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from slurm_plugin.reports import monthly
from slurm_plugin.storage import dialect, readonly
from tests import jobdb
from tests.reports.test_monthly import BERLIN, SETTINGS, jobs

report_html = pytest.importorskip("slurm_plugin.reports.html", reason="matplotlib (jobcarbon[report]) absent")


@pytest.fixture
def page(tmp_path: Path, db_url: str) -> Path:
    """The page for January, from SQLite and from PostgreSQL in turn (`db_url`)."""
    reader = readonly.Reader.open(jobdb.fill(db_url, jobs(), SETTINGS))
    document = monthly.build(reader, monthly.Request("2026-01", "account", BERLIN, time.time()))
    target = tmp_path / "monthly.html"
    target.write_text(report_html.render(document, monthly.intensity_curves(reader, document)))
    reader.close()
    return target


def test_the_page_is_self_contained(page: Path) -> None:
    text = page.read_text()
    assert text.count("<svg") == 2
    assert 'id="report-table"' in text
    assert "kg CO2e high" in text  # the bands' columns
    assert re.search(r"uncertainty \d{4}-\d\d \S+: [0-9.,]+ kg CO2e \([0-9.,]+ to [0-9.,]+\)", text)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text), "nothing may be fetched"
    assert "<script" not in text
    assert "@import" not in text
    assert "url(" not in text.replace("url(#", "")


def test_several_months_get_a_trend_chart_changes_and_the_largest_jobs(tmp_path: Path) -> None:
    reader = readonly.Reader.open(jobdb.fill(f"sqlite:///{tmp_path / 'q.db'}", jobs(), SETTINGS))
    try:
        request = monthly.Request("2026-01..2026-03", "account", BERLIN, time.time(), top=2)
        document = monthly.build(reader, request)
        text = report_html.render(document, monthly.intensity_curves(reader, document))
    finally:
        reader.close()
    assert text.count("<svg") == 3
    assert 'id="trend-chart"' in text
    assert "2026-01..2026-03 (3 months)" in text
    change = text[text.index('id="change-table"') :]
    change = change[: change.index("</table>")]
    physics = change[change.index("<td>physics</td>") :].split("</tr>")[0]
    january, february = (
        r["co2e_kg"] for r in document["rows"] if r["group"] == "physics" and r["month"] < "2026-03"
    )
    assert f"<td>{february:.3f} ({(february - january) / january * 100:+.0f}%)</td>" in physics
    assert 'id="top_jobs"' in text
    assert 'id="top_users"' in text
    assert text.count('<tr class="total">') == 3


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("JOBCARBON_REQUIRE_SLURM") == "1":
            pytest.fail("chromium is required in CI (.ci/run installs it)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


def browse(page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1200,1600",
    ]
    return subprocess.run(
        [chromium(), *flags, *mode, page.as_uri()], capture_output=True, text=True, timeout=120, check=False
    )


# The browser draws what the page holds, the same from either backend: one (slow) run is enough.
@pytest.mark.parametrize("db_url", [dialect.SQLITE], indirect=True)
def test_chromium_draws_the_charts(page: Path, tmp_path: Path) -> None:
    dom = browse(page, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="groups-chart"' in dom.stdout
    assert dom.stdout.count("<svg") == 2
    screenshot = tmp_path / "monthly.png"
    shot = browse(page, tmp_path / "profile-shot", f"--screenshot={screenshot}")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.exists()
    width, height, colours = png_colours(screenshot.read_bytes())
    assert (width, height) == (1200, 1600)
    assert len(colours) > 20  # not a blank page: text, bars and lines in several colours
    assert any(abs(r - 0x4A) < 8 and abs(g - 0x7F) < 8 and abs(b - 0x5A) < 8 for r, g, b in colours)  # bars


def png_colours(data: bytes) -> tuple[int, int, set[tuple[int, int, int]]]:
    """Width, height and the distinct colours of an 8-bit RGB(A) PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        at += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8
    assert colour_type in (2, 6)
    channels = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    previous, colours = bytearray(stride), set()
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up, corner = previous[x], previous[x - channels] if x >= channels else 0
            line[x] = (line[x] + _predict(kind, left, up, corner)) & 0xFF
        if y % 8 == 0:
            colours.update(tuple(line[x : x + 3]) for x in range(0, stride, channels * 4))
        previous = line
    return width, height, colours


def _predict(kind: int, left: int, up: int, corner: int) -> int:
    if kind == 0:
        return 0
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    estimate = left + up - corner
    pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
    return left if pa <= pb and pa <= pc else up if pb <= pc else corner
