"""Size of a run's report.html and its load time in headless Chromium (Debian's chromium + chromium-driver).

Load time: from navigation start to the explorer script marking the page ready, read from the page's
own clock (`performance.now()` when `data-explorer` becomes "ready"), median of 5 fresh loads.

    python scripts/measure_report.py RUN_DIR
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service


def main(argv: list[str]) -> None:
    page = Path(argv[0]) / "report" / "report.html"
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1800"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    times = []
    try:
        for _ in range(5):
            driver.get("about:blank")
            driver.get(page.resolve().as_uri())
            while driver.execute_script("return document.body.getAttribute('data-explorer')") != "ready":
                time.sleep(0.01)
            times.append(driver.execute_script("return performance.now()") / 1000)
    finally:
        driver.quit()
    print(
        f"{page}: {page.stat().st_size / 1e6:.2f} MB; load to ready {statistics.median(times):.2f} s "
        f"(median of 5; {', '.join(f'{t:.2f}' for t in times)})"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
