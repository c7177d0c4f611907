#!/usr/bin/python3
"""Checks a report.html as a reader would see it.

  check_report.py CHROMIUM REPORT_HTML SCREENSHOT_PNG SECTION...
  check_report.py --selftest CHROMIUM REPORT_HTML SCREENSHOT_PNG SECTION...
  check_report.py --max-bytes=N CHROMIUM REPORT_HTML SCREENSHOT_PNG SECTION...

- The file parses as HTML5 without a single parse error (html5lib, strict)
  and fetches nothing from the network.
- In headless Chromium, on a 1400 px wide window and on a 390 px phone, the
  page finishes rendering with no script error, no console error and no
  horizontal overflow, and each SECTION is there and not empty: the page
  describes what it drew (viz/report_page.hpp: data-layout on every section),
  so a chart without marks or hover values, a picture that was not decoded
  or shown, or a diagram without boxes fails the check.
- With #log-counts&no-zeros in the address the activation histogram says it
  uses the log scale and leaves the zeros out.
- A screenshot of the whole page is written.
- With --max-bytes, the file is no larger than N bytes.

--selftest first breaks copies of the report (a section's data removed, a
picture corrupted, a stray end tag) and requires each to fail the check
naming what is wrong; then it checks the report itself.
"""
import os
import re
import subprocess
import sys
import tempfile

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


class Failure(Exception):
    pass


def parse_errors(text):
    import html5lib

    parser = html5lib.HTMLParser(strict=False, namespaceHTMLElements=False)
    parser.parse(text)
    return [f"line {line}, column {col}: {code} {data if data else ''}" for (line, col), code, data in parser.errors]


def dump_dom(chromium, url, width, height):
    run = subprocess.run(
        [chromium, *FLAGS, f"--window-size={width},{height}", "--virtual-time-budget=10000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise Failure(f"chromium failed ({run.returncode}): {run.stderr[-2000:]}")
    uncaught = [line for line in run.stderr.splitlines() if "Uncaught" in line]
    if uncaught:
        raise Failure(f"console errors at {width} px: {uncaught[:3]}")
    return run.stdout


def layout_of(dom, width, sections):
    body = re.search(r"<body([^>]*)>", dom)
    if not body:
        raise Failure("no <body> in the rendered page")
    attrs = body.group(1)
    errors = re.search(r'data-errors="([^"]*)"', attrs)
    if errors:
        raise Failure(f"script errors at {width} px: {errors.group(1)}")
    if 'data-rendered="ok"' not in attrs:
        raise Failure(f"the page did not finish rendering at {width} px")
    if 'data-overflow="no"' not in attrs:
        raise Failure(f"the page is wider than a {width} px window")
    for name in sections:
        found = re.search(r'<section id="%s"[^>]*data-layout="([^"]*)"' % re.escape(name), dom)
        if not found:
            raise Failure(f"no '{name}' section at {width} px")
        counts = dict(item.split("=") for item in found.group(1).split())
        counts = {k: int(v) for k, v in counts.items()}
        tables = len(re.findall(r"<table", section_html(dom, name)))
        if counts["charts"] + counts["images"] + counts["nodes"] + tables == 0:
            raise Failure(f"section '{name}' rendered empty at {width} px ({found.group(1)})")
        if counts["drawn"] < counts["charts"]:
            raise Failure(f"section '{name}': {counts['charts'] - counts['drawn']} chart(s) with nothing drawn "
                          f"at {width} px ({found.group(1)})")
        if counts["hover"] < counts["charts"]:
            raise Failure(f"section '{name}': {counts['charts'] - counts['hover']} chart(s) without hover values "
                          f"at {width} px ({found.group(1)})")
        if counts["broken"] > 0:
            raise Failure(f"section '{name}': {counts['broken']} picture(s) that did not decode ({found.group(1)})")
        if counts["shown"] < counts["images"]:
            raise Failure(f"section '{name}': {counts['images'] - counts['shown']} picture(s) not shown at "
                          f"{width} px ({found.group(1)})")
    return dom


def section_html(dom, name):
    start = dom.find(f'<section id="{name}"')
    end = dom.find("</section>", start)
    return dom[start:end] if start >= 0 else ""


def check(chromium, report, screenshot, sections):
    with open(report, encoding="utf-8") as f:
        text = f.read()
    errors = parse_errors(text)
    if errors:
        raise Failure(f"not valid HTML: {len(errors)} parse error(s), first: {errors[0]}")
    if re.search(r'(src|href)="(https?:)?//', text):
        raise Failure("the page fetches something from the network")
    url = "file://" + os.path.abspath(report)
    layout_of(dump_dom(chromium, url, 1400, 1000), 1400, sections)
    layout_of(dump_dom(chromium, url, 390, 844), 390, sections)
    if "activations" in sections:
        dom = dump_dom(chromium, url + "#log-counts&no-zeros", 1400, 1000)
        caption = re.search(r"<figcaption>([^<]*histogram of[^<]*)</figcaption>", dom)
        if not caption or "log count scale" not in caption.group(1) or "zeros" not in caption.group(1):
            raise Failure(f"the histogram toggles did not take: {caption.group(1) if caption else 'no caption'}")
    if os.path.exists(screenshot):
        os.remove(screenshot)
    subprocess.run([chromium, *FLAGS, "--hide-scrollbars", "--window-size=1400,6000", f"--screenshot={screenshot}",
                    url], capture_output=True, timeout=120)
    if not os.path.exists(screenshot) or os.path.getsize(screenshot) < 10000:
        raise Failure("no screenshot")


def selftest(chromium, report, screenshot, sections):
    with open(report, encoding="utf-8") as f:
        text = f.read()
    broken = [
        ("a section's data removed", text.replace('"activations":[', '"removed":[', 1), "activations",
         "section 'activations'"),
        ("a corrupted picture", re.sub(r'src="data:image/png;base64,[A-Za-z0-9+/]{40}',
                                       'src="data:image/png;base64,' + "A" * 40, text, count=1), "pictures",
         "did not decode"),
        ("a stray end tag", text.replace("<h2>Model</h2>", "<h2>Model</h2></div>", 1), "model", "not valid HTML"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for what, page, needs, expected in broken:
            if needs not in sections:
                continue
            if page == text:
                raise Failure(f"selftest: could not make {what}")
            path = os.path.join(tmp, "report.html")
            with open(path, "w", encoding="utf-8") as f:
                f.write(page)
            try:
                check(chromium, path, os.path.join(tmp, "shot.png"), sections)
            except Failure as e:
                if expected not in str(e):
                    raise Failure(f"selftest: {what} failed for another reason: {e}")
                print(f"check_report: {what} is caught: {e}")
                continue
            raise Failure(f"selftest: {what} passed the check")


def main(argv):
    test, max_bytes = False, None
    while argv and argv[0].startswith("--"):
        flag = argv.pop(0)
        if flag == "--selftest":
            test = True
        elif flag.startswith("--max-bytes="):
            max_bytes = int(flag.split("=", 1)[1])
        else:
            print(f"check_report: unknown flag {flag}")
            return 2
    if len(argv) < 4:
        print(__doc__)
        return 2
    chromium, report, screenshot, sections = argv[0], argv[1], argv[2], argv[3:]
    try:
        if test:
            selftest(chromium, report, screenshot, sections)
        check(chromium, report, screenshot, sections)
        size = os.path.getsize(report)
        if max_bytes is not None and size > max_bytes:
            raise Failure(f"{size} bytes, over the budget of {max_bytes}")
    except Failure as e:
        print(f"check_report: {report}: {e}")
        return 1
    print(f"check_report: report renders: valid HTML, {os.path.getsize(report)} bytes, sections "
          f"{', '.join(sections)} drawn at 1400 and 390 px, no script errors; screenshot {screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
