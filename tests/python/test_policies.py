"""Policies and operator policies as RabbitMQ 3.10.8 stores and shows them:
the ctl verbs (set_policy, clear_policy, list_policies and the operator
ones), the HTTP routes (/api/policies, /api/operator-policies), their
validation texts and codes, the listings' policy columns, definitions
export and import, and (Warren only) a restart.

Every expectation was observed on RabbitMQ 3.10.8 with

    WARREN_TEST_URL=amqp://guest:guest@127.0.0.1:5672/%2F pytest test_policies.py

What policies do to queues (TTL, limits...) is not tested here. Each test
works in vhosts of its own (deleted at teardown, with their policies).
"""

import json

import pytest

from conftest import short_id
from ctl_util import out_lines, row_strings, rows
from mgmt_util import Mgmt, q, wait_for
from test_broker_process import tmpdir_warren  # noqa: F401 (a fixture)

HEADER = "vhost\tname\tpattern\tapply-to\tdefinition\tpriority"
NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}


@pytest.fixture(scope="module")
def api(broker):
    return Mgmt(broker.mgmt_url, broker.username, broker.password)


@pytest.fixture
def vhost(accounts, broker):
    v = accounts.vhost("pol")
    accounts.grant(broker.username, v, ".*", ".*", ".*")
    return v


def validation_failed(*errors):
    return "Validation failed\n\n" + "".join(e + "\n" for e in errors)


def escaped(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------------------
# ctl
# ---------------------------------------------------------------------------

def test_set_list_clear_policy(ctl, vhost):
    r = ctl("set_policy", "-p", vhost, "--priority", "3", "--apply-to", "queues",
            "pol_a", "^pol_", '{"message-ttl":1000,"max-length":5}')
    assert r.stdout == ('Setting policy "pol_a" for pattern "^pol_" to '
                        '"{"message-ttl":1000,"max-length":5}" with priority "3" '
                        'for vhost "%s" ...\n' % vhost)
    r = ctl("set_policy", "-p", vhost, "pol_b", "x$", '{"alternate-exchange":"ae"}')
    assert 'with priority "0" for vhost' in r.stdout
    r = ctl("list_policies", "-p", vhost)
    # lowest priority first; the definition's keys in order
    assert out_lines(r.stdout) == [
        'Listing policies for vhost "%s" ...' % vhost,
        HEADER,
        '%s\tpol_b\tx$\tall\t{"alternate-exchange":"ae"}\t0' % vhost,
        '%s\tpol_a\t^pol_\tqueues\t{"max-length":5,"message-ttl":1000}\t3' % vhost,
    ]
    assert rows(ctl("list_policies", "-p", vhost, "-s").stdout)[1] == [
        vhost, "pol_a", "^pol_", "queues", '{"max-length":5,"message-ttl":1000}', "3"]
    r = ctl("list_policies", "-p", vhost, "--formatter", "json")
    assert json.loads(r.stdout) == [
        {"vhost": vhost, "name": "pol_b", "pattern": "x$", "apply-to": "all",
         "definition": '{"alternate-exchange":"ae"}', "priority": 0},
        {"vhost": vhost, "name": "pol_a", "pattern": "^pol_", "apply-to": "queues",
         "definition": '{"max-length":5,"message-ttl":1000}', "priority": 3},
    ]
    # replaced by name
    ctl("set_policy", "-p", vhost, "pol_b", "y", '{"max-length":1}', "--priority", "9")
    assert rows(ctl("list_policies", "-p", vhost, "-s").stdout)[1] == [
        vhost, "pol_b", "y", "all", '{"max-length":1}', "9"]
    r = ctl("clear_policy", "-p", vhost, "pol_b")
    assert r.stdout == 'Clearing policy "pol_b" on vhost "%s" ...\n' % vhost
    assert [row[1] for row in rows(ctl("list_policies", "-p", vhost, "-s").stdout)] == ["pol_a"]
    r = ctl("clear_policy", "-p", vhost, "pol_b", check=False)
    assert r.returncode == 69
    assert r.stderr.startswith("Error:\nParameter does not exist"), r.stderr
    ctl("clear_policy", "-p", vhost, "pol_a")
    r = ctl("list_policies", "-p", vhost)
    assert r.stdout == 'Listing policies for vhost "%s" ...\n\n' % vhost


VALIDATION = [
    ('{"foo":1}', '[{<<"foo">>,1}] are not recognised policy settings'),
    ('{"foo":1,"bar":2}', '[{<<"bar">>,2},{<<"foo">>,1}] are not recognised policy settings'),
    ('{"message-ttl":-1}', "-1 is not a valid message TTL"),
    ('{"message-ttl":"a"}', '<<"a">> is not a valid message TTL'),
    ('{"message-ttl":1.5}', "1.5 is not a valid message TTL"),
    ('{"expires":0}', "0 is not a valid queue expiry"),
    ('{"message-ttl":-1,"expires":0}', "0 is not a valid queue expiry"),
    ('{"foo":1,"message-ttl":-1}', "-1 is not a valid message TTL"),
    ('{"overflow":"x"}', '<<"x">> is not a valid overflow value'),
    ('{"max-length":-1}', "-1 is not a valid maximum length"),
    ('{"max-length-bytes":-1}', "-1 is not a valid maximum length in bytes"),
    ('{"delivery-limit":-1}', "-1 is not a valid delivery limit"),
    ('{"queue-mode":"x"}', '<<"x">> is not a valid queue-mode value'),
    ('{"alternate-exchange":1}', "1 is not a valid alternate exchange name"),
    ('{"dead-letter-exchange":1}', "1 is not a valid dead letter exchange name"),
    ('{"ha-mode":"x"}', '<<"x">> is not a valid ha-mode value'),
    ('{"ha-params":1}', "ha-mode must be specified to specify ha-params, ha-sync-mode or "
                        "ha-promote-on-shutdown"),
    ("{}", "no policy provided"),
]


@pytest.mark.parametrize("definition,error", VALIDATION)
def test_set_policy_validation(ctl, vhost, definition, error):
    r = ctl("set_policy", "-p", vhost, "pol_bad", ".*", definition, check=False)
    assert r.returncode == 69, r.stderr
    assert r.stderr.startswith("Error:\n" + validation_failed(error)), r.stderr
    assert ctl("list_policies", "-p", vhost, "-s").stdout == "\n"


@pytest.mark.parametrize("definition", [
    '{"dead-letter-routing-key":"k"}',
    '{"ha-mode":"all"}',
    '{"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic"}',
    '{"queue-master-locator":"min-masters"}',
    '{"queue-mode":"lazy","overflow":"reject-publish-dlx","expires":1,"message-ttl":0}',
])
def test_set_policy_accepts_what_rabbitmq_accepts(ctl, vhost, definition):
    ctl("set_policy", "-p", vhost, "pol_ok", ".*", definition)
    assert rows(ctl("list_policies", "-p", vhost, "-s").stdout)[0][4] == \
        json.dumps(json.loads(definition), sort_keys=True, separators=(",", ":"))


def test_set_policy_other_errors(ctl, vhost):
    r = ctl("set_policy", "-p", vhost, "p", "(", '{"max-length":1}', check=False)
    assert r.returncode == 69
    assert r.stderr.startswith("Error:\nValidation failed\n\npattern should be regular "
                               "expression but is invalid: {\"missing )\",1}\n"), r.stderr
    r = ctl("set_policy", "-p", vhost, "p", ".*", '{"max-length":1}', "--apply-to", "foo",
            check=False)
    assert r.returncode == 69
    assert r.stderr.startswith("Error:\n" + validation_failed(
        "apply-to 'foo' unrecognised; should be 'queues', 'exchanges' or 'all'")), r.stderr
    r = ctl("set_policy", "-p", vhost, "p", ".*", '{"max-length":1', check=False)
    assert r.returncode == 69
    assert r.stderr.startswith("Error:\nJSON decoding error. Reason: badarg"), r.stderr
    r = ctl("set_policy", "-p", vhost, "p", ".*", '{"max-length":1}', "--priority", "x",
            check=False)
    assert r.returncode == 64
    assert "--priority : x" in r.stderr
    r = ctl("set_policy", "p", check=False)
    assert r.returncode == 64
    assert "not enough arguments" in r.stderr
    nope = "pol-nope-" + short_id()
    r = ctl("set_policy", "-p", nope, "p", ".*", '{"max-length":1}', check=False)
    assert r.returncode == 65
    assert "Virtual host '%s' does not exist" % nope in r.stderr
    r = ctl("list_policies", "-p", nope, check=False)
    assert r.returncode == 65
    assert "Virtual host '%s' does not exist" % nope in r.stderr
    r = ctl("clear_policy", "-p", nope, "p", check=False)
    assert r.returncode == 69
    assert r.stderr.startswith("Error:\nParameter does not exist"), r.stderr
    r = ctl("list_policies", "-p", vhost, "name", check=False)
    assert r.returncode == 64
    assert "too many arguments" in r.stderr


def test_operator_policies(ctl, vhost):
    r = ctl("set_operator_policy", "-p", vhost, "--priority", "1", "--apply-to", "queues",
            "pol_op", "^pol_", '{"message-ttl":500,"max-length":10}')
    assert r.stdout == ('Setting operator policy override "pol_op" for pattern "^pol_" to '
                        '"{"message-ttl":500,"max-length":10}" with priority "1" for vhost '
                        '"%s" ...\n' % vhost)
    ctl("set_operator_policy", "-p", vhost, "pol_op2", ".", '{"max-in-memory-length":3}')
    r = ctl("list_operator_policies", "-p", vhost)
    assert out_lines(r.stdout) == [
        'Listing operator policy overrides for vhost "%s" ...' % vhost,
        HEADER,
        '%s\tpol_op2\t.\tall\t{"max-in-memory-length":3}\t0' % vhost,
        '%s\tpol_op\t^pol_\tqueues\t{"max-length":10,"message-ttl":500}\t1' % vhost,
    ]
    # operator policies are not user policies
    assert ctl("list_policies", "-p", vhost, "-s").stdout == "\n"
    r = ctl("set_operator_policy", "-p", vhost, "pol_op3", ".",
            '{"dead-letter-exchange":"x"}', check=False)
    assert r.returncode == 69
    assert r.stderr.startswith("Error:\n" + validation_failed(
        '[{<<"dead-letter-exchange">>,<<"x">>}] are not recognised policy settings')), r.stderr
    r = ctl("clear_operator_policy", "-p", vhost, "pol_op2")
    assert r.stdout == 'Clearing operator policy "pol_op2" on vhost "%s" ...\n' % vhost
    r = ctl("clear_operator_policy", "-p", vhost, "pol_op2", check=False)
    assert r.returncode == 69
    assert r.stderr.startswith("Error:\nParameter does not exist")
    r = ctl("list_operator_policies", "-p", vhost, "--formatter", "json")
    assert json.loads(r.stdout) == [
        {"vhost": vhost, "name": "pol_op", "pattern": "^pol_", "apply-to": "queues",
         "definition": '{"max-length":10,"message-ttl":500}', "priority": 1}]


def test_listings_show_the_policy(ctl, api, vhost):
    for name in ("pol_q1", "other_q"):
        api.ok("PUT", "/api/queues/%s/%s" % (q(vhost), name), {"durable": False})
    api.ok("PUT", "/api/exchanges/%s/pol_x1" % q(vhost), {"type": "direct"})
    ctl("set_policy", "-p", vhost, "--priority", "3", "--apply-to", "queues",
        "pol_a", "^pol_", '{"message-ttl":1000,"max-length":5}')
    ctl("set_policy", "-p", vhost, "pol_low", "^pol_", '{"expires":100000}')
    ctl("set_operator_policy", "-p", vhost, "--apply-to", "queues",
        "pol_op", "^pol_", '{"message-ttl":500,"max-length":10}')
    got = dict(tuple(r) for r in rows(ctl("list_queues", "-p", vhost, "-s", "name",
                                          "policy").stdout))
    assert got == {"pol_q1": "pol_a", "other_q": ""}
    got = dict(tuple(r) for r in rows(ctl("list_exchanges", "-p", vhost, "-s", "name",
                                          "policy").stdout))
    assert got["pol_x1"] == "pol_low" and got["amq.direct"] == ""
    r = ctl("list_queues", "-p", vhost, "name", "policy", "--formatter", "json")
    assert {"name": "pol_q1", "policy": "pol_a"} in json.loads(r.stdout)

    # RabbitMQ's management database learns a queue's policies with its
    # next statistics (every 5 s)
    def queue_shows(name, policy, operator_policy, effective):
        def check():
            qj = api.ok("GET", "/api/queues/%s/%s" % (q(vhost), name))
            got = (qj["policy"], qj["operator_policy"], qj["effective_policy_definition"])
            return got == (policy, operator_policy, effective) or got
        return wait_for(lambda: check() is True, what="policies of " + name)

    queue_shows("pol_q1", "pol_a", "pol_op", {"max-length": 5, "message-ttl": 500})
    queue_shows("other_q", None, None, {})
    listed = {x["name"]: x for x in api.ok("GET", "/api/queues/%s" % q(vhost))}
    assert listed["pol_q1"]["effective_policy_definition"] == {"max-length": 5,
                                                               "message-ttl": 500}
    assert listed["pol_q1"]["policy"] == "pol_a"
    x = api.ok("GET", "/api/exchanges/%s/pol_x1" % q(vhost))
    assert x["policy"] == "pol_low"
    assert "policy" not in api.ok("GET", "/api/exchanges/%s/amq.direct" % q(vhost))
    ctl("clear_policy", "-p", vhost, "pol_a")
    queue_shows("pol_q1", "pol_low", "pol_op",
                {"expires": 100000, "max-length": 10, "message-ttl": 500})


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

def test_http_policy_routes(api, vhost):
    path = "/api/policies/%s/pol_h" % q(vhost)
    status, _, body = api.put(path, {"pattern": "^pol_h", "definition": {"max-length": 3}})
    assert (status, body) == (201, None)
    assert api.ok("GET", path) == {"vhost": vhost, "name": "pol_h", "pattern": "^pol_h",
                                   "apply-to": "all", "definition": {"max-length": 3},
                                   "priority": 0}
    status, _, _ = api.put(path, {"pattern": "^pol_h", "definition": {"max-length": 3},
                                  "priority": 2, "apply-to": "exchanges"})
    assert status == 204
    api.ok("PUT", "/api/policies/%s/pol_g" % q(vhost),
           {"pattern": "g", "definition": {"message-ttl": 1}, "priority": 1})
    listed = api.ok("GET", "/api/policies/%s" % q(vhost))
    assert [p["name"] for p in listed] == ["pol_g", "pol_h"]
    assert listed[1] == {"vhost": vhost, "name": "pol_h", "pattern": "^pol_h",
                         "apply-to": "exchanges", "definition": {"max-length": 3},
                         "priority": 2}
    everywhere = [p for p in api.ok("GET", "/api/policies") if p["vhost"] == vhost]
    assert everywhere == listed
    # operator policies are listed apart
    assert api.ok("GET", "/api/operator-policies/%s" % q(vhost)) == []
    assert api.delete(path)[0] == 204
    assert api.get(path)[0] == 404
    assert api.delete(path)[:3:2] == (404, NOT_FOUND)
    assert [p["name"] for p in api.ok("GET", "/api/policies/%s" % q(vhost))] == ["pol_g"]


def test_http_policy_errors(api, vhost):
    path = "/api/policies/%s/pol_x" % q(vhost)
    status, _, body = api.put(path, {"pattern": "^pol_h", "definition": {"foo": 3}})
    assert status == 400
    assert body == {"error": "bad_request", "reason": escaped(validation_failed(
        '[{<<"foo">>,3}] are not recognised policy settings'))}
    status, _, body = api.put(path, {"pattern": "^a"})
    assert (status, body) == (400, {"error": "bad_request",
                                    "reason": "[{key_missing,definition}]"})
    status, _, body = api.put(path, {"definition": {"max-length": 3}})
    assert (status, body) == (400, {"error": "bad_request",
                                    "reason": "[{key_missing,pattern}]"})
    status, _, body = api.put(path, {"pattern": "^a", "definition": {"max-length": 3},
                                     "priority": "5"})
    assert status == 400
    assert body["reason"] == escaped(validation_failed(
        'priority should be a number, actually was <<"5">>'))
    assert api.get(path)[0] == 404
    nope = "pol-nope-" + short_id()
    status, _, body = api.put("/api/policies/%s/p" % q(nope),
                              {"pattern": "^a", "definition": {"max-length": 3}})
    assert (status, body) == (404, {"error": "not_found", "reason": "vhost_not_found"})
    assert api.get("/api/policies/%s" % q(nope))[0] == 404
    assert api.get("/api/policies/%s/p" % q(nope))[0] == 404


def test_http_operator_policy_routes(api, vhost):
    path = "/api/operator-policies/%s/pol_op3" % q(vhost)
    status, _, body = api.put(path, {"pattern": "^pol_h", "definition": {"overflow": "drop-head"}})
    assert status == 400
    # not escaped, unlike a policy's reason
    assert body == {"error": "bad_request", "reason": validation_failed(
        '[{<<"overflow">>,<<"drop-head">>}] are not recognised policy settings')}
    assert api.put(path, {"pattern": "^pol_h", "definition": {"expires": 100}})[0] == 201
    assert api.ok("GET", path) == {"vhost": vhost, "name": "pol_op3", "pattern": "^pol_h",
                                   "apply-to": "all", "definition": {"expires": 100},
                                   "priority": 0}
    assert [p["name"] for p in api.ok("GET", "/api/operator-policies")
            if p["vhost"] == vhost] == ["pol_op3"]
    assert api.ok("GET", "/api/policies/%s" % q(vhost)) == []
    assert api.delete(path)[0] == 204
    assert api.get(path)[0] == 404


def test_http_who_may_change_policies(api, accounts, vhost):
    pw = "pw-" + short_id()
    maker = accounts.user(vhost=vhost, password=pw, tags=("policymaker",))
    mgmt = accounts.user(vhost=vhost, password=pw, tags=("management",))
    as_maker = api.as_user(maker.name, pw)
    as_mgmt = api.as_user(mgmt.name, pw)
    path = "/api/policies/%s/pol_m" % q(vhost)
    body = {"pattern": ".", "definition": {"max-length": 1}}
    status, _, err = as_mgmt.put(path, body)
    assert (status, err) == (401, {"error": "not_authorised",
                                   "reason": "User not authorised to access object"})
    assert as_maker.put(path, body)[0] == 201
    assert as_maker.ok("GET", path)["name"] == "pol_m"
    # anyone who may use the API lists the policies of the vhosts it reaches
    assert [p["name"] for p in as_mgmt.ok("GET", "/api/policies/%s" % q(vhost))] == ["pol_m"]
    assert [p["name"] for p in as_mgmt.ok("GET", "/api/policies")] == ["pol_m"]
    status, _, err = as_mgmt.get(path)
    assert status == 401
    # operator policies are the administrator's
    status, _, err = as_maker.put("/api/operator-policies/%s/pol_o" % q(vhost), body)
    assert (status, err) == (401, {"error": "not_authorised",
                                   "reason": "Not administrator user"})
    assert as_maker.delete(path)[0] == 204


# ---------------------------------------------------------------------------
# definitions
# ---------------------------------------------------------------------------

def test_definitions_export_and_import(api, ctl, accounts, vhost):
    ctl("set_policy", "-p", vhost, "--priority", "2", "--apply-to", "queues",
        "pol_e", "^e", '{"max-length":7,"overflow":"reject-publish"}')
    ctl("set_operator_policy", "-p", vhost, "pol_op", "^e", '{"max-length":3}')
    doc = api.ok("GET", "/api/definitions")
    assert "operator_policies" not in doc
    mine = [p for p in doc["policies"] if p["vhost"] == vhost]
    assert mine == [{"vhost": vhost, "name": "pol_e", "pattern": "^e", "apply-to": "queues",
                     "definition": {"max-length": 7, "overflow": "reject-publish"},
                     "priority": 2}]
    per_vhost = api.ok("GET", "/api/definitions/%s" % q(vhost))
    assert per_vhost["policies"] == mine
    # import into a vhost of its own
    other = accounts.vhost("poli")
    imported = dict(mine[0], vhost=other, name="pol_i")
    assert api.post("/api/definitions", {"policies": [imported]})[0] in (200, 201, 204)
    assert api.ok("GET", "/api/policies/%s/pol_i" % q(other)) == imported
    # a vhost's definitions land in the vhost they are posted to
    third = accounts.vhost("polj")
    assert api.post("/api/definitions/%s" % q(third),
                    {"policies": [dict(imported, name="pol_j")]})[0] in (200, 201, 204)
    assert api.ok("GET", "/api/policies/%s/pol_j" % q(third))["vhost"] == third


def test_ctl_export_and_import(ctl, ctl_tmpdir, accounts, vhost):
    ctl("set_policy", "-p", vhost, "pol_c", "^c", '{"message-ttl":5}')
    path = "%s/defs.json" % ctl_tmpdir
    ctl("export_definitions", path)
    with open(path) as f:
        doc = json.load(f)
    mine = [p for p in doc["policies"] if p["vhost"] == vhost]
    assert mine == [{"vhost": vhost, "name": "pol_c", "pattern": "^c", "apply-to": "all",
                     "definition": {"message-ttl": 5}, "priority": 0}]
    other = accounts.vhost("polc")
    with open(path, "w") as f:
        json.dump({"vhosts": [{"name": other}],
                   "policies": [dict(mine[0], vhost=other)]}, f)
    ctl("import_definitions", path)
    assert rows(ctl("list_policies", "-p", other, "-s").stdout) == [
        [other, "pol_c", "^c", "all", '{"message-ttl":5}', "0"]]


# ---------------------------------------------------------------------------
# Warren only: a restart
# ---------------------------------------------------------------------------

@pytest.mark.needs_warren_process
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_policies_survive_restart(tmpdir_warren, how):
    from test_ctl_process import ok, restart, started, wctl

    w = started(tmpdir_warren)
    v = "v%s" % short_id()
    ok(wctl(w, "add_vhost", v))
    ok(wctl(w, "set_policy", "-p", v, "--priority", "4", "--apply-to", "exchanges",
            "keep", "^k", '{"alternate-exchange":"ae"}'))
    ok(wctl(w, "set_policy", "-p", v, "gone", ".", '{"max-length":1}'))
    ok(wctl(w, "set_operator_policy", "-p", v, "op", ".", '{"expires":1000}'))
    ok(wctl(w, "set_policy", "keep-root", ".", '{"message-ttl":1}'))
    ok(wctl(w, "clear_policy", "-p", v, "gone"))
    gone_v = "gone%s" % short_id()
    ok(wctl(w, "add_vhost", gone_v))
    ok(wctl(w, "set_policy", "-p", gone_v, "p", ".", '{"max-length":1}'))
    ok(wctl(w, "delete_vhost", gone_v))

    restart(w, kill=(how == "sigkill"))

    assert rows(ok(wctl(w, "list_policies", "-p", v, "-s")).stdout) == [
        [v, "keep", "^k", "exchanges", '{"alternate-exchange":"ae"}', "4"]]
    assert rows(ok(wctl(w, "list_operator_policies", "-p", v, "-s")).stdout) == [
        [v, "op", ".", "all", '{"expires":1000}', "0"]]
    assert row_strings(ok(wctl(w, "list_policies", "-s")).stdout) == [
        '/\tkeep-root\t.\tall\t{"message-ttl":1}\t0']
    ok(wctl(w, "add_vhost", gone_v))
    assert ok(wctl(w, "list_policies", "-p", gone_v, "-s")).stdout == "\n"
    assert w.stop() == 0
