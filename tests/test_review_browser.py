"""A reviewer in a real browser (Debian's chromium, headless): edit a clip caption, submit; the release has it."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from hivau.tasks.manifests import pull_and_merge
from hivau.tasks.release.publish import ReleaseSettings, build_release
from hivau.tasks.review.labelstudio import Connection, LabelStudio
from hivau.tasks.review.projects import ReviewSettings
from hivau.tasks.review.push import push
from hivau.workspace import Workspace

pytestmark = pytest.mark.prefect_server

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-dev-shm-usage", "--no-first-run", "--disable-sync",
                  "--window-size=1400,1800"]


@pytest.fixture()
def browser(tmp_path):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed (make bootstrap installs them as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    # an explicit driver path: Selenium Manager must never try to download a browser or driver
    d = webdriver.Chrome(service=Service(driver), options=options)
    d.set_page_load_timeout(120)
    yield d
    d.quit()


def _click_fresh(driver, selector: str) -> bool:
    """Click the element now matching `selector`; False (try again) when it is absent or was just re-rendered."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        driver.execute_script("arguments[0].click()", driver.find_element(By.CSS_SELECTOR, selector))
        return True
    except (NoSuchElementException, StaleElementReferenceException):
        return False


def _log_in(driver, wait, label_studio: dict) -> None:
    """Log in through Label Studio's own form, as the fixture's user."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.get(f"{label_studio['url']}/user/login/")
    wait.until(ec.presence_of_element_located((By.NAME, "email"))).send_keys(label_studio["email"])
    driver.find_element(By.NAME, "password").send_keys(label_studio["password"])
    driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    wait.until(lambda d: "/user/login" not in d.current_url)


def test_caption_edited_in_the_browser_reaches_the_release(label_studio, fresh_workspace, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ws = Workspace.at(fresh_workspace)
    st = ReviewSettings(enabled="on", url=label_studio["url"], document_root=str(label_studio["document_root"]))
    lsc = LabelStudio(Connection(label_studio["url"], SecretStr(label_studio["token"])))
    pushed = push(ws, lsc, st)
    clip_tasks = {t["data"]["item_id"]: t for t in lsc.iter_tasks(pushed.projects["clip"])}
    item_id, task = next((i, t) for i, t in sorted(clip_tasks.items()) if t["predictions"][-1]["result"])
    new_caption = "Edited in the browser: a person in orange trips and falls onto the pavement."

    wait = WebDriverWait(browser, 90)
    try:
        _log_in(browser, wait, label_studio)
        browser.get(f"{label_studio['url']}/projects/{pushed.projects['clip']}/data?task={task['id']}")
        # the draft caption is pre-filled from the prediction; open it for editing, replace it, save it
        # the editor re-renders while it loads the task: a button found a moment too early goes stale
        wait.until(lambda d: _click_fresh(d, "[data-testid=htx-textbox-edit-button]"))
        box = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=htx-textbox-input]")))
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(new_caption)
        browser.find_element(By.CSS_SELECTOR, "[data-testid=htx-textbox-save]").click()
        browser.execute_script("arguments[0].click()",
                               browser.find_element(By.CSS_SELECTOR, "input[type=radio][name=accept]"))
        submit = next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Submit")
        submit.click()
        wait.until(lambda d: any(t["annotations"] for t in lsc.iter_tasks(pushed.projects["clip"])
                                 if t["id"] == task["id"]))
    except Exception:
        browser.save_screenshot(str(tmp_path / "failure.png"))
        raise

    report = pull_and_merge(ws, lsc, st)
    assert report.new_or_changed["clip"] == 1
    release = build_release(ws, ReleaseSettings())
    rows = [r for split in ("train", "test") for r in pq.read_table(release / "data" / f"{split}.parquet").to_pylist()]
    (row,) = [r for r in rows if r["item_id"] == item_id]
    assert row["answer"] == new_caption and row["provenance"] == "edited"


def test_the_annotator_sees_the_flags_and_the_lead_sees_the_queue_columns(label_studio, fresh_workspace, browser,
                                                                          tmp_path):
    """In a real browser: the queue tab lists what a lead sorts and filters by (item, level, audit, errors,
    checks, risk), not the task's media URL or hashes; the task's page shows its failed checks and evidence."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from hivau.tasks.text.verify import verify_item

    ws = Workspace.at(fresh_workspace)
    item = next(it for it in ws.iter_videos() if it.status == "done" and it.summaries)
    summary = next(s for s in item.summaries if s.level == "event")
    summary.description = f"{summary.description} It ends at 500 s."
    ws.put_video(verify_item(item))
    st = ReviewSettings(enabled="on", url=label_studio["url"], document_root=str(label_studio["document_root"]),
                        levels=["event"])
    lsc = LabelStudio(Connection(label_studio["url"], SecretStr(label_studio["token"])))
    pid = push(ws, lsc, st).projects["event"]
    (view,) = [v for v in lsc.views(pid) if v["data"]["title"] == "hivau review queue"]
    task = next(t for t in lsc.iter_tasks(pid) if t["data"]["item_id"] == summary.item_id)

    wait = WebDriverWait(browser, 90)
    try:
        _log_in(browser, wait, label_studio)
        browser.get(f"{label_studio['url']}/projects/{pid}/data?tab={view['id']}")
        wait.until(lambda d: "risk_reasons" in d.find_element(By.TAG_NAME, "body").text)
        header = browser.find_element(By.TAG_NAME, "body").text
        for column in ("queue", "item_id", "level", "audit", "errors", "warnings", "checks", "risk"):
            assert column in header, column
        assert "draft_sha" not in header and "offset_s" not in header
        assert "time_outside_span" in header  # the flagged task's checks column, in the list itself
        browser.get(f"{label_studio['url']}/projects/{pid}/data?tab={view['id']}&task={task['id']}")
        wait.until(lambda d: "ERROR time_outside_span (description)" in d.find_element(By.TAG_NAME, "body").text)
        assert "500 s (span" in browser.find_element(By.TAG_NAME, "body").text
    except Exception:
        browser.save_screenshot(str(tmp_path / "failure.png"))
        raise
