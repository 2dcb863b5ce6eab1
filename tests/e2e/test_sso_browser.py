"""Single sign-on in a real browser (issue 5's acceptance): headless Chromium, driven by
selenium through chromedriver, against real processes: `hub serve` on the test's database,
`hub dispatch` and `hub worker` (back-channel logout goes through the outbox and Celery, as
under `hub up`) and two example brand sites (partners/brandsite) of two different partners.

A member signs up, verifies the address from the mail the hub kept, turns on TOTP, and logs
in on brand A with password + code; brand B then signs them in with no form at all (it asks
only for `openid`, which shares nothing, so the hub asks no consent; showing their name and
points there is the member's choice, and that asks consent once). Logging out on brand A logs them
out of brand B too. Logging in on A again, B is signed in at once, with no page at all.
Then, with memberships in both brands' programs, they convert A points into B points on the
hub's dashboard (the form, the quote, Confirm), and brand B's page shows the new points.

Debian's chromium and chromium-driver are installed here when missing; if that fails, the
test fails (it never skips).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pyotp
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select

from hub import ledger
from hub.exchange import rates
from hub.identity import mail
from hub.identity.account_models import MemberAccount
from hub.identity.oidc import clients as brand_clients
from hub.privacy import blind
from hub.programs import service
from hub.programs.models import Membership, Program
from partners.brandsite.config import SCOPE, Brand
from tests.conftest import unique_code
from tests.e2e.relay_stack import free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Without the background-networking flags, Chromium keeps calling Google's hosts, which this
# machine's closed network refuses.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1024,900")
PASSWORD = "a long enough passphrase 42"


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver if either is missing (apt-get, as root or
    with sudo -n); fail, not skip, when that does not work."""
    if all(os.access(p, os.X_OK) for p in (CHROMIUM, CHROMEDRIVER)):
        return
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "chromium", "chromium-driver"]
    output = ""
    for attempt in ([install], [[*prefix, "apt-get", "update"], install]):
        try:
            for command in attempt:
                done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
                output += done.stdout[-2000:] + done.stderr[-2000:]
                if done.returncode:
                    break
        except (OSError, subprocess.TimeoutExpired) as exc:
            output += f"\n{exc}"
        if all(os.access(p, os.X_OK) for p in (CHROMIUM, CHROMEDRIVER)):
            return
    pytest.fail(f"could not install chromium and chromium-driver with apt-get:\n{output}")


class Procs:
    """Processes of the test, each in its own process group (a stop reaches its children)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict) -> None:
        log = open(self.workdir / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def wait_http(self, name: str, url: str, timeout: float = 30) -> None:
        def up():
            if self.procs[name].poll() is not None:
                raise AssertionError(f"{name} exited:\n{self.log(name)}")
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.TransportError:
                return False
        wait_for(up, timeout, name)

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-3000:]}" for name in self.procs)

    def stop(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)


def _brand_partner(db, name: str) -> str:
    code = unique_code("B")

    def work(s):
        service.create_partner(s, code, name, by="test")
        service.create_program(s, partner_code=code, code=code, name=f"{name} Points", point_value=Decimal("10"),
                               earn_currency="IDR", earn_rate=Decimal("0.001"), by="test")
    db.write(work)
    return code


@pytest.fixture(scope="module")
def stack(settings, db, tmp_path_factory):
    """The hub (serve, dispatch, worker) and two brand sites of two partners, on free ports."""
    workdir = tmp_path_factory.mktemp("sso-browser")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HUB_DATABASE_URL": settings.database_url, "HUB_SECRET_KEY": settings.secret_key,
           "HUB_ISSUER": issuer, "HUB_PORT": str(port), "HUB_BROKER_URL": settings.broker_url,
           "HUB_INSTANCE_DIR": str(workdir), "HUB_TASK_QUEUE": f"test-sso-{uuid.uuid4().hex[:8]}"}
    brands = {}
    # As in the demo (partners/brandsite/brands/): brand B signs in with `openid` alone.
    for key, name, scope in (("a", "Kopi Kita", SCOPE), ("b", "Toko Buku Pelita", "openid")):
        partner = _brand_partner(db, name)
        brand = Brand(code=f"e2e{key}", name=name, partner=partner, program=partner, port=free_port(), scope=scope)
        client, secret = db.write(lambda s, brand=brand: brand_clients.register(
            s, name=f"{name} website", partner_id=service.partner_by_code(s, brand.partner).id,
            redirect_uris=[brand.redirect_uri], post_logout_redirect_uris=[brand.post_logout_redirect_uri],
            backchannel_logout_uri=brand.backchannel_logout_uri, by="test"))
        path = workdir / f"{brand.code}.json"
        path.write_text(json.dumps({k: getattr(brand, k) for k in ("code", "name", "partner", "program", "port",
                                                                   "scope")}))
        brands[key] = (brand, path, {"BRAND_ISSUER": issuer, "BRAND_CLIENT_ID": client.client_id,
                                     "BRAND_CLIENT_SECRET": secret})

    procs = Procs(workdir)
    hub = [sys.executable, "-m", "hub.cli"]
    try:
        procs.start("serve", hub + ["serve"], env)
        procs.start("dispatch", hub + ["dispatch", "--poll", "0.1"], env)
        procs.start("worker", hub + ["worker", "--concurrency", "2"], env)
        for key, (brand, path, client_env) in brands.items():
            procs.start(f"brand-{key}", [sys.executable, "-m", "partners.brandsite", str(path), "--threads", "4"],
                        {**env, **client_env})
        procs.wait_http("serve", f"{issuer}/healthz")
        for key, (brand, _, _) in brands.items():
            procs.wait_http(f"brand-{key}", f"{brand.base_url}/healthz")
        yield {"issuer": issuer, "a": brands["a"][0].base_url, "b": brands["b"][0].base_url, "procs": procs,
               "programs": {key: brand.program for key, (brand, _, _) in brands.items()}}
    finally:
        procs.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _member_with_points(db, email: str, holdings: dict[str, int]) -> None:
    """Test set-up: the account's member joins these programs with these points (as linking
    cards that earned them would)."""
    def work(s):
        member_id = s.scalar(select(MemberAccount.member_id).where(MemberAccount.email_index == blind.index("email", email)))
        for code, points in holdings.items():
            program = s.scalar(select(Program).where(Program.code == code))
            account = ledger.open_account(s, program.id, service.MEMBER_ACCOUNT, cached=True, no_overdraft=True)
            s.add(Membership(member_id=member_id, program_id=program.id, account_id=account))
            s.flush()
            if points:
                ledger.post(s, [ledger.TransferSpec(debit=program.issuance_account_id, credit=account, amount=points,
                                                    code="bonus", ledger=program.id, caused_by="test")])
    db.write(work)


class Codes:
    """TOTP codes as the member's app shows them, each for a later time step than the last
    (the hub accepts a step once, and one step either side of its own clock)."""

    def __init__(self, secret: str):
        self.totp, self.last = pyotp.TOTP(secret), None

    def next(self) -> str:
        while True:
            now = time.time()
            if now % 30 > 28:  # about to change step: the hub might check it in the next one
                time.sleep(30 - now % 30 + 0.1)
                continue
            current = int(now) // 30
            step = current - 1 if self.last is None else max(self.last + 1, current - 1)
            if step <= current + 1:
                self.last = step
                return self.totp.at(step * 30)
            time.sleep(30 - now % 30 + 0.1)


def test_sign_up_log_in_with_totp_then_sso_across_two_brands_and_logout_of_both(stack, browser, db, settings):
    hub, brand_a, brand_b = stack["issuer"], stack["a"], stack["b"]
    b = browser
    wait = WebDriverWait(b, 15, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    email = f"sso-{uuid.uuid4().hex[:8]}@example.com"

    def fill(**fields):
        for name, value in fields.items():
            element = b.find_element(By.ID, name)
            element.clear()
            element.send_keys(value)

    def submit():
        b.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()

    # Reading a page while the browser leaves it can fail in Chromium's inspector too ("unhandled
    # inspector error"), not only as a stale element: the status poll tries again on both.
    navigating = WebDriverWait(b, 15, ignored_exceptions=(WebDriverException,))

    def status(base: str, expected: str = "") -> str:
        """The brand page's status line once it says `expected` (a click that leaves a brand
        page for the same brand's next one would otherwise read the old page, or lose it
        while reading it)."""
        return navigating.until(lambda d: d.current_url.startswith(base) and expected in (
            text := d.find_element(By.ID, "status").text) and text)

    try:
        # Sign up on the hub; the verification mail is kept in the database (no mail server).
        b.get(f"{hub}/account/signup")
        fill(email=email, password=PASSWORD, given_name="Siti", family_name="Rahayu")
        submit()
        wait.until(lambda d: "/account/signup" in d.current_url and not d.find_elements(By.ID, "password"))
        with db.read() as s:
            (message,) = mail.latest(s, to=email, limit=1)
        link = re.search(r"http://\S+/account/verify\?\S+", message.body).group(0)
        b.get(link)
        submit()  # the link's page only shows a button: pressing it confirms the address
        # Wait for the answer page (no token field): a navigation started before the POST's
        # answer arrives would race it.
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "input[name=token]"))

        # Log in and turn on two-step verification with the key the page shows.
        b.get(f"{hub}/account/login")
        fill(email=email, password=PASSWORD)
        submit()
        wait.until(lambda d: "/account/login" not in d.current_url)
        b.get(f"{hub}/account/security")
        fill(password=PASSWORD)  # turning it on asks for the password
        submit()  # "Turn on"
        secret = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "code.secret"))[0].text.replace(" ", "")
        codes = Codes(secret)
        fill(code=codes.next())
        submit()
        wait.until(lambda d: "/security/totp/confirm" in d.current_url and not d.find_elements(By.ID, "code"))
        b.find_element(By.CSS_SELECTOR, "footer form button").click()  # log out of the hub
        wait.until(lambda d: "/account/login" in d.current_url)

        # Brand A: not signed in (its silent check at the hub says login_required).
        b.get(f"{brand_a}/")
        status(brand_a, "not signed in")
        b.find_element(By.ID, "login").click()
        # The hub asks for the password, then the code, then consent to share with partner A.
        wait.until(lambda d: d.current_url.startswith(f"{hub}/account/login"))
        fill(email=email, password=PASSWORD)
        submit()
        wait.until(lambda d: "/account/login/code" in d.current_url)
        fill(code=codes.next())
        submit()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "button[name=decision][value=allow]"))
        assert "Kopi Kita" in b.page_source
        b.find_element(By.CSS_SELECTOR, "button[name=decision][value=allow]").click()
        status(brand_a, "Signed in as Siti Rahayu")
        assert b.find_element(By.ID, "member-email").text == email
        assert b.find_elements(By.ID, "points") and not b.find_elements(By.ID, "points-error")

        # Brand B (another partner): signed in at once, without a form. It signs in with
        # `openid` alone, which shares nothing but its own pairwise id, so the hub asks nothing.
        b.get(f"{brand_b}/")
        status(brand_b, "Signed in with your coalition account")
        assert not b.find_elements(By.CSS_SELECTOR, "input[type=password]")
        assert not b.find_elements(By.ID, "member-name") and not b.find_elements(By.ID, "points")
        # Sharing name and points with B is the member's choice: then the hub asks, once.
        b.find_element(By.ID, "share").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "button[name=decision][value=allow]"))
        assert b.current_url.startswith(f"{hub}/oauth/") and "Toko Buku Pelita" in b.page_source
        b.find_element(By.CSS_SELECTOR, "button[name=decision][value=allow]").click()
        status(brand_b, "Signed in as Siti Rahayu")
        assert b.find_elements(By.ID, "points") and not b.find_elements(By.ID, "points-error")

        # Log out on brand A (RP-initiated): the hub ends its session and tells brand B
        # (back-channel, through the outbox, the dispatcher and the worker).
        b.get(f"{brand_a}/")
        b.find_element(By.ID, "logout").click()
        status(brand_a, "not signed in")
        assert "signed out" in b.find_element(By.CSS_SELECTOR, ".notice").text

        def b_signed_out():
            b.get(f"{brand_b}/")
            return "not signed in" in status(brand_b)
        wait_for(b_signed_out, 20, "brand B to be logged out by the back-channel logout", interval=0.5)
        brand_b_log = stack["procs"].log("brand-b")
        assert "back-channel logout ended 1 session(s)" in brand_b_log
        assert "logout token refused" not in brand_b_log

        # Log in on A again (password + code, consent on record: no consent page); then
        # brand B is signed in at once: no page of the hub's at all.
        b.get(f"{brand_a}/")
        b.find_element(By.ID, "login").click()
        wait.until(lambda d: d.current_url.startswith(f"{hub}/account/login"))
        fill(email=email, password=PASSWORD)
        submit()
        wait.until(lambda d: "/account/login/code" in d.current_url)
        fill(code=codes.next())
        submit()
        status(brand_a, "Signed in as Siti Rahayu")
        b.get(f"{brand_b}/")
        status(brand_b, "Signed in as Siti Rahayu")

        # Convert on the hub's dashboard: 1,000 A points (10 units each, 1% fee) buy 990 B
        # points (10 units each). Brand B's page then shows them (it reads /v1/me each time).
        program_a, program_b = stack["programs"]["a"], stack["programs"]["b"]
        _member_with_points(db, email, {program_a: 1200, program_b: 0})
        db.write(lambda s: rates.set_pair(s, program_a, program_b, open=True, fee_bps=100, min_points=100,
                                          increment=100, updated_by="test"))
        b.get(f"{hub}/account/")
        Select(b.find_element(By.ID, "convert-pair")).select_by_value(f"{program_a}:{program_b}")
        fill(**{"convert-points": "1,000"})
        b.find_element(By.CSS_SELECTOR, "form.convert button[type=submit]").click()
        confirm = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "form[action='/account/convert'] button"))
        offer = b.find_element(By.CSS_SELECTOR, "dl.quote").text
        assert f"1,000 {program_a} points (Kopi Kita Points)" in offer, offer
        assert f"990 {program_b} points (Toko Buku Pelita Points)" in offer, offer
        confirm[0].click()
        done = wait.until(lambda d: d.current_url.endswith("/account/convert") and d.find_element(By.TAG_NAME, "h1").text)
        assert done == "Points converted", b.page_source
        b.get(f"{hub}/account/")
        history = b.find_element(By.ID, "history-title").find_element(By.XPATH, "..").text
        assert history.count("Conversion Kopi Kita Points → Toko Buku Pelita Points") == 2, history
        b.get(f"{brand_b}/")
        status(brand_b, "Signed in as Siti Rahayu")
        row = b.find_element(By.CSS_SELECTOR, f"#points tr[data-program='{program_b}']")
        assert row.find_elements(By.TAG_NAME, "td")[1].text == "990"
    except Exception:
        print(f"browser at {b.current_url}:\n{b.page_source[:3000]}\n{stack['procs'].logs()}")
        raise
