#!/usr/bin/env python3
"""`moe route`'s report.html in a real browser: headless Chromium driven by Selenium, offline.

    python3 scripts/check_route_report.py --model DIR [--out DIR] [--screenshot route.png]

Runs `moe route --demo-corpus` on DIR (the demo's model, or any MoE model with a tokenizer) and opens the page from
the file system with the network off, as a user opening it from disk would. Checks: no console errors; every
domain's tokens are drawn, coloured; hovering a token shows its experts and weights for every MoE layer; choosing
another domain and layer redraws; the heat maps are there. Saves a screenshot. Needs Debian's `chromium` and
`chromium-driver` and Selenium (PyPI) in the python that runs it.
"""
import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("SE_OFFLINE", "true")   # Selenium Manager would otherwise try to download a driver
from selenium import webdriver                       # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By           # noqa: E402
from selenium.webdriver.support.ui import Select      # noqa: E402


def fail(message):
    print(f"check_route_report: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--moe", default=".build/release/moe")
    ap.add_argument("--out", default="/tmp/moe-route-report")
    ap.add_argument("--screenshot", default=None, help="PNG path (default: OUT/route.png)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = ap.parse_args()

    run = subprocess.run([args.moe, "route", "--model", args.model, "--demo-corpus", "--max-tokens", "4000", "--out", args.out],
                         capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"moe route exited with {run.returncode}: {run.stderr[-2000:]}")
    report = json.load(open(os.path.join(args.out, "report.json")))
    layers = len(report["moe_layers"])

    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600",
                 "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]:   # no network: a page that fetched would fail
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=args.chromedriver), options=options)
    try:
        driver.get("file://" + os.path.abspath(os.path.join(args.out, "report.html")))
        severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if severe:
            fail(f"console errors: {severe}")
        domains = Select(driver.find_element(By.ID, "domain"))
        if [o.text for o in domains.options] != [d["name"] for d in report["domains"]]:
            fail(f"domain menu {[o.text for o in domains.options]} is not the report's domains")
        for i, name in enumerate(o.text for o in domains.options):
            domains.select_by_index(i)
            spans = driver.find_elements(By.CSS_SELECTOR, "#text span")
            if not spans:
                fail(f"no tokens drawn for {name}")
            coloured = {s.value_of_css_property("background-color") for s in spans[:200]}
            if len(coloured) < 2:
                fail(f"{name}: the tokens are not coloured by expert ({coloured})")
        span = driver.find_elements(By.CSS_SELECTOR, "#text span")[3]
        ActionChains(driver).move_to_element(span).perform()
        tip = driver.find_element(By.ID, "tip")
        if not tip.is_displayed():
            fail("hovering a token shows nothing")
        lines = [line for line in tip.text.split("\n") if "layer" in line]
        if len(lines) != layers or not all(" e" in line or line.rstrip().endswith(":") for line in lines):
            fail(f"the hover shows {len(lines)} layer lines, expected {layers}: {tip.text!r}")
        before = [s.value_of_css_property("background-color") for s in driver.find_elements(By.CSS_SELECTOR, "#text span")[:200]]
        Select(driver.find_element(By.ID, "layer")).select_by_index(0)
        after = [s.value_of_css_property("background-color") for s in driver.find_elements(By.CSS_SELECTOR, "#text span")[:200]]
        if layers > 1 and before == after:
            fail("choosing another layer did not recolour the tokens")
        if len(driver.find_elements(By.CSS_SELECTOR, "figure svg")) < len(report["domains"]) + 1:
            fail("heat maps missing")
        severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if severe:
            fail(f"console errors after interaction: {severe}")
        shot = args.screenshot or os.path.join(args.out, "route.png")
        driver.save_screenshot(shot)
        print(f"check_route_report: ok ({len(report['domains'])} domains, {layers} MoE layers, hover and redraw work; {shot})")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
