"""Warren's management web page, driven in a real browser.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver`` packages;
``tools/install-browser.sh`` installs them) is driven through selenium. The
test makes a queue holding N messages with pika, logs in to the page as the
broker's user, checks the overview (and saves a screenshot of it), finds the
queue in the queues list with its message count, opens the queue's page,
purges the queue from there and sees the count drop to 0, on the page and by
a passive declare.

Where the page is:

* default: ``broker.mgmt_url``, where the Warren broker started by the
  fixture serves the page and the management API;
* ``WARREN_TEST_URL`` set (parity runs against RabbitMQ): port 15672 serves
  RabbitMQ's own page, so the test skips itself, unless
* ``WARREN_PAGE_URL`` (e.g. ``http://127.0.0.1:8099``) names a server of
  Warren's page whose ``/api/`` reaches the same broker as the AMQP side
  (a development proxy in front of RabbitMQ's management API).

Screenshots go to ``$WARREN_TEST_ARTIFACTS`` or else ``tests/python/artifacts/``.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid

import pika
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WAIT_S = 30           # one wait for a condition on the page
MESSAGES = 7          # messages put in the test's queue
INSTALL_HINT = "run tools/install-browser.sh (installs Debian's chromium and chromium-driver)"


def _artifacts_dir():
    d = os.environ.get("WARREN_TEST_ARTIFACTS") or os.path.join(HERE, "artifacts")
    os.makedirs(d, exist_ok=True)
    return d


def _which(env_name, candidates):
    p = os.environ.get(env_name)
    if p:
        return p if os.path.exists(p) else None
    for c in candidates:
        found = shutil.which(c) if not os.path.isabs(c) else (c if os.path.exists(c) else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def page_url(broker):
    url = os.environ.get("WARREN_PAGE_URL")
    if url:
        return url.rstrip("/")
    if broker.external:
        pytest.skip("WARREN_TEST_URL set: the management port there serves RabbitMQ's own "
                    "web page, and this test checks Warren's; set WARREN_PAGE_URL to a server "
                    "of Warren's page in front of that broker's API to run it anyway")
    return broker.mgmt_url


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -r tests/python/requirements.txt",
                    pytrace=False)
    chromium = _which("WARREN_CHROMIUM", ["/usr/bin/chromium", "chromium", "chromium-browser"])
    driver_bin = _which("WARREN_CHROMEDRIVER", ["/usr/bin/chromedriver", "chromedriver"])
    if not chromium or not driver_bin:
        pytest.fail("headless Chromium not found (chromium: %s, chromedriver: %s): %s" % (
            chromium or "missing", driver_bin or "missing", INSTALL_HINT), pytrace=False)
    profile = tempfile.mkdtemp(prefix="warren-chromium-")
    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--window-size=1440,1000", "--force-device-scale-factor=1", "--lang=en-US",
                "--user-data-dir=" + profile):
        opts.add_argument(arg)
    service = Service(executable_path=driver_bin, log_output=subprocess.DEVNULL)
    try:
        drv = webdriver.Chrome(service=service, options=opts)
    except Exception as e:  # a browser that does not start: say how to get a working one
        shutil.rmtree(profile, ignore_errors=True)
        pytest.fail("could not start headless Chromium (%s, %s): %s\n%s" % (
            chromium, driver_bin, e, INSTALL_HINT), pytrace=False)
    drv.set_page_load_timeout(WAIT_S)
    drv.set_script_timeout(WAIT_S)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """Small helpers over the selenium driver: waits for conditions with the
    page's error banner in the failure message."""

    def __init__(self, drv):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
        self.drv = drv
        self.By = By
        self.Wait = WebDriverWait

    def find(self, css):
        return self.drv.find_element(self.By.CSS_SELECTOR, css)

    def finds(self, css):
        return self.drv.find_elements(self.By.CSS_SELECTOR, css)

    def banner(self):
        try:
            b = self.find("#banner")
            return b.text if b.is_displayed() else ""
        except Exception:
            return ""

    def until(self, cond, what, timeout=WAIT_S):
        from selenium.common.exceptions import StaleElementReferenceException, NoSuchElementException

        def check(_):
            try:
                return cond()
            except (StaleElementReferenceException, NoSuchElementException):
                return False
        try:
            return self.Wait(self.drv, timeout, poll_frequency=0.2).until(check)
        except Exception as e:
            raise AssertionError("timed out after %ss waiting for %s (page banner: %r, url: %s): %s" % (
                timeout, what, self.banner(), self.drv.current_url, type(e).__name__)) from None

    def visible(self, css, timeout=WAIT_S):
        return self.until(lambda: self.find(css) if self.find(css).is_displayed() else False,
                          "%s to be visible" % css, timeout)

    def text_is(self, css, expected, timeout=WAIT_S):
        return self.until(lambda: self.find(css).text.strip() == expected,
                          "%s to read %r" % (css, expected), timeout)


def _number(text):
    t = text.strip().replace(",", "")
    return int(t) if re.fullmatch(r"\d+", t) else None


def _fit_window(drv, width=1440):
    """Make the window as tall as the page, so a screenshot shows all of it."""
    script = ("return [Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),"
              " window.innerHeight];")
    for _ in range(3):
        content, inner = drv.execute_script(script)
        if content <= inner:
            break
        w, h = drv.get_window_size()["width"], drv.get_window_size()["height"]
        drv.set_window_size(width, min(h + content - inner + 4, 4000))


def _passive_count(broker, queue):
    c = broker.connect()
    try:
        return c.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        c.close()


@pytest.mark.timeout(240)
def test_page_overview_queues_and_purge(page_url, browser, broker, cleanup, capsys):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC

    # A queue holding MESSAGES messages, persistent and not.
    qname = cleanup.queue("page-test-%s" % uuid.uuid4().hex[:12])
    conn = broker.connect()
    try:
        ch = conn.channel()
        ch.queue_declare(qname, durable=True)
        ch.confirm_delivery()
        for i in range(MESSAGES):
            ch.basic_publish("", qname, b"web page message %d" % i,
                             pika.BasicProperties(delivery_mode=2 if i % 2 else 1),
                             mandatory=True)
    finally:
        conn.close()
    assert _passive_count(broker, qname) == MESSAGES

    drv = browser
    page = Page(drv)
    started = time.monotonic()
    drv.get(page_url + "/")

    try:
        # A wrong password is refused with the login form's message.
        page.visible("#login-username").send_keys(broker.username)
        page.find("#login-password").send_keys("wrong-" + uuid.uuid4().hex[:6])
        page.find("#login-submit").click()
        page.text_is("#login-error", "Login failed")
        assert not page.find("#view").is_displayed()

        # Log in.
        user = page.find("#login-username")
        user.clear()
        user.send_keys(broker.username)
        page.find("#login-password").send_keys(broker.password + Keys.ENTER)
        page.visible("[data-testid=view-overview]")
        page.text_is("#current-user", broker.username)
        page.until(lambda: page.find("#node-name").text.strip() not in ("", "\u2013"),
                   "the node name in the header")

        # Overview: totals, node figures, listeners, charts.
        page.until(lambda: _number(page.find("#total-queues").text) is not None,
                   "the queue total on the overview")
        assert _number(page.find("#total-queues").text) >= 1
        # (the broker's totals may lag the queue by a few seconds)
        page.until(lambda: (_number(page.find("#queued-total").text) or 0) >= MESSAGES,
                   "the queued-messages total to count the test's messages")
        for css in ("#total-connections", "#total-channels", "#total-exchanges",
                    "#total-consumers", "#queued-ready", "#queued-unacked", "#queued-total"):
            assert _number(page.find(css).text) is not None, css
        page.until(lambda: page.finds("#nodes-table tbody tr"), "the nodes table")
        node_row = page.find("#nodes-table tbody tr")
        assert "/" in node_row.text  # memory used / limit, descriptors used / total
        page.until(lambda: page.finds("#listeners-table tbody tr"), "the listeners table")
        assert "amqp" in page.find("#listeners-table").text
        assert page.find("#chart-rates").is_displayed()
        assert page.find("#chart-queued").is_displayed()
        page.until(lambda: page.finds("#chart-queued-legend .legend-item"), "the chart legend")

        _fit_window(drv)
        shot = os.path.join(_artifacts_dir(), "web_page_overview.png")
        assert drv.save_screenshot(shot), "screenshot not written"
        with capsys.disabled():
            print("\noverview screenshot: %s" % shot)
        drv.set_window_size(1440, 1000)

        # Queues list: filter by the queue's name, wait for its count (the
        # page refreshes itself every 5 s; the broker's figures may lag).
        page.find("#tab-queues").click()
        page.visible("[data-testid=view-queues]")
        page.visible("#queues-filter").send_keys(qname)
        row_css = 'tr[data-testid="queue-row"][data-name="%s"]' % qname
        page.until(lambda: len(page.finds('tr[data-testid="queue-row"]')) == 1 and page.finds(row_css),
                   "the name filter to leave the queue's row alone in the list")
        page.text_is(row_css + ' td[data-testid="queue-messages"]', str(MESSAGES))

        # Sorting by a column header changes the request's order.
        page.find('th[data-sort="messages"]').click()
        page.until(lambda: "sorted" in page.find('th[data-sort="messages"]').get_attribute("class"),
                   "the Total column to be sorted")

        # The queue's own page.
        page.find(row_css + ' a[data-testid="queue-link"]').click()
        page.until(lambda: page.find("[data-testid=view-queue]").get_attribute("data-name") == qname,
                   "the queue's page")
        assert "#/queues/%2F/" + qname in drv.current_url
        page.text_is("#queue-name", qname)
        page.text_is("#queue-messages", str(MESSAGES))
        page.until(lambda: "(AMQP default)" in page.find("#queue-bindings").text,
                   "the default binding in the bindings table")

        # Purge from the page, accepting its confirmation.
        page.find("#queue-purge").click()
        alert = page.Wait(drv, WAIT_S).until(EC.alert_is_present())
        assert qname in alert.text
        alert.accept()
        page.until(lambda: "purged" in page.banner(), "the purge confirmation banner")
        page.text_is("#queue-messages", "0")
        assert _passive_count(broker, qname) == 0
        print("web page test: %.1f s in the browser" % (time.monotonic() - started))
    except BaseException:
        try:
            fail_shot = os.path.join(_artifacts_dir(), "web_page_failure.png")
            _fit_window(drv)
            drv.save_screenshot(fail_shot)
            print("failure screenshot: %s" % fail_shot)
        except Exception:
            pass
        raise


def _api(page_url, method, path, user, password, body=None):
    """(status, parsed JSON or None) of one management API call."""
    import base64
    import json
    import urllib.error
    import urllib.request
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(page_url + "/api" + path, data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(
        ("%s:%s" % (user, password)).encode()).decode())
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, None


def _login(page, username, password):
    u = page.visible("#login-username")
    u.clear()
    u.send_keys(username)
    p = page.find("#login-password")
    p.clear()
    p.send_keys(password)
    page.find("#login-submit").click()


def _answer_dialog(page, text=None):
    from selenium.webdriver.support import expected_conditions as EC
    alert = page.Wait(page.drv, WAIT_S).until(EC.alert_is_present())
    if text is not None:
        alert.send_keys(text)
    alert.accept()


@pytest.mark.timeout(240)
def test_page_admin_publish_and_close(page_url, browser, broker, cleanup):
    """Admin pages (users, tags, vhosts, permissions), the login refusal of a
    user without management tags, publishing from an exchange's page (routed
    or not) and closing a connection with a reason."""
    drv = browser
    page = Page(drv)
    tag = uuid.uuid4().hex[:10]
    mgmt_user, mgmt_pw = "page-u-" + tag, "pw-" + tag
    plain_user = "page-n-" + tag
    vhost = "page-v-" + tag
    qname = cleanup.queue("page-test-pub-" + tag)
    admin = (broker.username, broker.password)

    pub = broker.connect()
    held = None
    try:
        pub.channel().queue_declare(qname)
        drv.get(page_url + "/")
        if page.find("#login").is_displayed():
            _login(page, *admin)
        page.visible("#tab-admin").click()
        page.visible("[data-testid=view-admin]")

        # A user with the monitoring tag, added from the page.
        page.find("#add-user-name").send_keys(mgmt_user)
        page.find("#add-user-password").send_keys(mgmt_pw)
        page.find("#add-user-tags").send_keys("monitoring")
        page.find("#add-user-submit").click()
        urow = 'tr[data-testid="user-row"][data-name="%s"]' % mgmt_user
        page.until(lambda: "monitoring" in page.find(urow).text, "the new user's row")

        # Its tags set to management; its password still works.
        page.find(urow + ' [data-testid="user-set-tags"]').click()
        _answer_dialog(page, "management")
        page.until(lambda: "management" in page.find(urow).text and
                   "monitoring" not in page.find(urow).text, "the user's new tags")
        status, who = _api(page_url, "GET", "/whoami", mgmt_user, mgmt_pw)
        assert status == 200 and who["name"] == mgmt_user, (status, who)

        # A user without tags (no management access).
        page.find("#add-user-name").send_keys(plain_user)
        page.find("#add-user-password").send_keys(mgmt_pw)
        page.find("#add-user-submit").click()
        page.until(lambda: page.finds('tr[data-testid="user-row"][data-name="%s"]' % plain_user),
                   "the tagless user's row")

        # A vhost, and a permission for the new user in it; cleared again.
        page.find("#add-vhost-name").send_keys(vhost)
        page.find("#add-vhost-submit").click()
        vrow = 'tr[data-testid="vhost-row"][data-name="%s"]' % vhost
        page.until(lambda: page.finds(vrow), "the new vhost's row")
        from selenium.webdriver.support.ui import Select
        page.until(lambda: mgmt_user in [o.text for o in Select(page.find("#perm-user")).options]
                   and vhost in [o.text for o in Select(page.find("#perm-vhost")).options],
                   "the permission form's choices")
        Select(page.find("#perm-user")).select_by_value(mgmt_user)
        Select(page.find("#perm-vhost")).select_by_value(vhost)
        page.find("#perm-submit").click()
        prow = 'tr[data-testid="permission-row"][data-user="%s"][data-vhost="%s"]' % (mgmt_user, vhost)
        page.until(lambda: page.finds(prow), "the new permission's row")
        status, perm = _api(page_url, "GET", "/permissions/%s/%s" % (vhost, mgmt_user), *admin)
        assert status == 200 and perm["configure"] == ".*", (status, perm)
        page.find(prow + ' [data-testid="permission-clear"]').click()
        _answer_dialog(page)
        page.until(lambda: not page.finds(prow), "the cleared permission's row to go")
        page.find(vrow + ' [data-testid="vhost-delete"]').click()
        _answer_dialog(page)
        page.until(lambda: not page.finds(vrow), "the deleted vhost's row to go")
        assert _api(page_url, "GET", "/vhosts/" + vhost, *admin)[0] == 404

        # Publishing from the default exchange's page: routed, then not.
        drv.execute_script("location.hash = arguments[0]", "#/exchanges/%2F/amq.default")
        page.visible("[data-testid=view-exchange]")
        page.text_is("#exchange-name", "(AMQP default)")
        page.find("#exchange-publish-rk").send_keys(qname)
        page.find("#exchange-publish-payload").send_keys("from the page")
        page.find("#exchange-publish").click()
        page.until(lambda: page.find("#exchange-publish-result").get_attribute("data-routed") == "true",
                   "the routed publish's result")
        rk = page.find("#exchange-publish-rk")
        rk.clear()
        rk.send_keys("page-no-such-queue-" + tag)
        page.find("#exchange-publish").click()
        page.until(lambda: page.find("#exchange-publish-result").get_attribute("data-routed") == "false",
                   "the unroutable publish's result")
        assert "not routed" in page.find("#exchange-publish-result").text
        assert _passive_count(broker, qname) == 1
        body = pub.channel().basic_get(qname, auto_ack=True)[2]
        assert body == b"from the page"

        # Closing a connection from the connections list, with a reason.
        held = broker.connect()
        held_port = held._impl._transport._sock.getsockname()[1]
        page.find("#tab-connections").click()
        page.visible("#connections-filter").send_keys(":%d ->" % held_port)
        crow = 'tr[data-testid="connection-row"]'
        page.until(lambda: len(page.finds(crow)) == 1 and (":%d " % held_port) in page.find(crow).text,
                   "the held connection's row")
        page.find(crow + ' [data-testid="connection-close"]').click()
        _answer_dialog(page, "page test " + tag)
        closed = {}

        def gone():
            try:
                held.process_data_events(time_limit=0)
            except pika.exceptions.ConnectionClosedByBroker as e:
                closed["reason"] = e.reply_text
            except pika.exceptions.AMQPError as e:
                closed["reason"] = repr(e)
            return bool(closed)
        page.until(gone, "the broker to close the held connection")
        assert ("page test " + tag) in closed["reason"], closed

        # Log out; a tagless user is refused; a management user has no admin tab.
        page.find("#logout").click()
        _login(page, plain_user, mgmt_pw)
        page.text_is("#login-error", "Not management user")
        _login(page, mgmt_user, mgmt_pw)
        page.visible("[data-testid=view-overview]")
        page.text_is("#current-user", mgmt_user)
        assert not page.find("#tab-admin").is_displayed()

        # Credentials that stop working (the user deleted) lead back to the
        # login form at the next refresh.
        assert _api(page_url, "DELETE", "/users/" + mgmt_user, *admin)[0] in (200, 204)
        page.visible("#login-username")
        page.text_is("#login-error", "Login failed")
        assert not page.find("#tabs").is_displayed()
    except BaseException:
        try:
            fail_shot = os.path.join(_artifacts_dir(), "web_page_admin_failure.png")
            _fit_window(drv)
            drv.save_screenshot(fail_shot)
            print("failure screenshot: %s" % fail_shot)
        except Exception:
            pass
        raise
    finally:
        for c in (held, pub):
            try:
                if c is not None and c.is_open:
                    c.close()
            except Exception:
                pass
        for u in (mgmt_user, plain_user):
            _api(page_url, "DELETE", "/users/" + u, *admin)
        _api(page_url, "DELETE", "/vhosts/" + vhost, *admin)
