"""`newsletter doctor`: each check against real peers — a DNS server on
127.0.0.1 filled with good and broken records (NEWSLETTER_DNS_RESOLVER), a
real SMTP server with AUTH, fake ESP APIs that check the request as each
provider documents it, a private Dovecot, the app served on a port, the
scheduler's lock — plus the CLI and the editor's settings page."""

from __future__ import annotations

import json

import pytest

from newsletter import db
from newsletter.delivery.dkim import generate_key
from newsletter.doctor import checks, dns
from newsletter.doctor.checks import run_checks
from newsletter.scheduling.lock import make_lock
from tests.editor_fixtures import ADMIN, login, make_account
from tests.helpers import FakeDns, FakeProvider, SmtpSink, free_port, start_peers

DOMAIN = "news.example.org"
FROM = f"GET THE SIGNAL <signal@{DOMAIN}>"


@pytest.fixture
def fake_dns():
    servers = []

    def start(records):
        server = FakeDns(records)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def dkim_key(tmp_path):
    path = tmp_path / "dkim.pem"
    record = generate_key(path)
    return path, record


def good_records(dkim_record: str) -> dict:
    return {
        (f"{DOMAIN}.", "TXT"): [
            "v=spf1 ip4:192.0.2.10 include:_spf.example.org ~all",
            "google-site-verification=x",
        ],
        ("_spf.example.org.", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"],
        (f"gts1._domainkey.{DOMAIN}.", "TXT"): [dkim_record],
        (f"_dmarc.{DOMAIN}.", "TXT"): ["v=DMARC1; p=quarantine; rua=mailto:dmarc@example.org"],
        (f"{DOMAIN}.", "MX"): ["10 mx1.example.org."],
    }


def dns_settings(make_settings, server, dkim_key, **overrides):
    values = dict(
        mail_from=FROM,
        dns_resolver=server.resolver,
        dkim_domain=DOMAIN,
        dkim_selector="gts1",
        dkim_key_file=str(dkim_key[0]),
        transport="smtp://127.0.0.1:25",
    )
    values.update(overrides)
    return make_settings(**values)


def only(settings, name: str):
    [finding] = run_checks(settings, (name,))
    return finding


# --- DNS --------------------------------------------------------------------------------


def test_good_records_pass_every_dns_check(make_settings, fake_dns, dkim_key):
    server = fake_dns(good_records(dkim_key[1]))
    settings = dns_settings(make_settings, server, dkim_key)
    found = {f.check: f for f in run_checks(settings, ("spf", "dkim", "dmarc", "bounce-domain"))}
    assert {name: f.status for name, f in found.items()} == {
        "spf": "pass",
        "dkim": "pass",
        "dmarc": "pass",
        "bounce-domain": "pass",
    }
    assert "2 DNS lookups" in found["spf"].detail or "1 DNS lookups" in found["spf"].detail
    assert "DKIM aligned" in found["dmarc"].detail and "policy quarantine" in found["dmarc"].detail
    assert (f"gts1._domainkey.{DOMAIN}.", "TXT") in server.queries  # really asked our server


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({(f"{DOMAIN}.", "TXT"): ["google-site-verification=x"]}, "fail", "no SPF record"),
        ({(f"{DOMAIN}.", "TXT"): ["v=spf1 -all", "v=spf1 ~all"]}, "fail", "2 SPF records"),
        ({(f"{DOMAIN}.", "TXT"): ["v=spf1 +all"]}, "fail", "lets anyone send"),
        ({(f"{DOMAIN}.", "TXT"): ["v=spf1 ip4:192.0.2.1 ?all"]}, "warn", "does not end in -all or ~all"),
        ({(f"{DOMAIN}.", "TXT"): ["v=spf1 " + " ".join(f"include:s{n}.example.org" for n in range(11)) + " -all"]},
         "fail", "needs 11 DNS lookups"),
    ],
)  # fmt: skip
def test_broken_spf_records(make_settings, fake_dns, dkim_key, change, status, words):
    server = fake_dns({**good_records(dkim_key[1]), **change})
    finding = only(dns_settings(make_settings, server, dkim_key), "spf")
    assert finding.status == status and words in finding.detail
    assert finding.fix


def test_spf_counts_lookups_through_nested_includes(make_settings, fake_dns, dkim_key):
    records = good_records(dkim_key[1])
    records[(f"{DOMAIN}.", "TXT")] = ["v=spf1 include:a.example.org mx -all"]
    records[("a.example.org.", "TXT")] = [
        "v=spf1 " + " ".join(f"include:b{n}.example.org" for n in range(5)) + " -all"
    ]
    for n in range(5):
        records[(f"b{n}.example.org.", "TXT")] = ["v=spf1 a mx -all"]
    finding = only(dns_settings(make_settings, fake_dns(records), dkim_key), "spf")
    assert finding.status == "fail" and "needs 17 DNS lookups" in finding.detail  # 1+1 + 5 + 5×2


def test_an_esp_whose_include_is_missing_is_a_warning(make_settings, fake_dns, dkim_key):
    server = fake_dns(good_records(dkim_key[1]))
    settings = dns_settings(make_settings, server, dkim_key, transport="postmark://TOKEN@default")
    finding = only(settings, "spf")
    assert finding.status == "warn" and "spf.mtasv.net" in finding.detail


def test_dkim_missing_revoked_or_not_matching_the_key_file(make_settings, fake_dns, dkim_key, tmp_path):
    other = generate_key(tmp_path / "other.pem")
    for records, words in (
        ({}, "no DKIM key published"),
        ({(f"gts1._domainkey.{DOMAIN}.", "TXT"): ["v=DKIM1; k=rsa; p="]}, "empty (revoked)"),
        ({(f"gts1._domainkey.{DOMAIN}.", "TXT"): [other]}, "not the one in NEWSLETTER_DKIM_KEY_FILE"),
    ):
        base = good_records(dkim_key[1])
        base.pop((f"gts1._domainkey.{DOMAIN}.", "TXT"))
        server = fake_dns({**base, **records})
        finding = only(dns_settings(make_settings, server, dkim_key), "dkim")
        assert finding.status == "fail" and words in finding.detail, finding
        assert f"p={dkim_key[1].split('p=')[1]}" in finding.fix  # the record to publish


def test_dkim_off_fails_over_smtp_and_is_the_esps_job_otherwise(make_settings, fake_dns, dkim_key):
    server = fake_dns(good_records(dkim_key[1]))
    smtp = make_settings(mail_from=FROM, dns_resolver=server.resolver, transport="smtp://127.0.0.1:25")
    assert only(smtp, "dkim").status == "fail"
    esp = make_settings(mail_from=FROM, dns_resolver=server.resolver, transport="sendgrid://KEY@default")
    assert only(esp, "dkim").status == "skip"


def test_dmarc_missing_unaligned_and_found_at_the_organisational_domain(make_settings, fake_dns, dkim_key):
    records = good_records(dkim_key[1])
    del records[(f"_dmarc.{DOMAIN}.", "TXT")]
    server = fake_dns(records)
    missing = only(dns_settings(make_settings, server, dkim_key), "dmarc")
    assert (
        missing.status == "fail" and "no DMARC record" in missing.detail and "v=DMARC1; p=none" in missing.fix
    )

    server = fake_dns({**records, ("_dmarc.example.org.", "TXT"): ["v=DMARC1; p=reject; adkim=r"]})
    found = only(dns_settings(make_settings, server, dkim_key), "dmarc")
    assert found.status == "pass" and "_dmarc.example.org" in found.detail

    strict = fake_dns({**records, (f"_dmarc.{DOMAIN}.", "TXT"): ["v=DMARC1; p=reject; adkim=s; aspf=s"]})
    unaligned = dns_settings(
        make_settings,
        strict,
        dkim_key,
        dkim_domain="example.org",
        bounce_return_path="b+{token}@bounce.example.net",
    )
    finding = only(unaligned, "dmarc")
    assert finding.status == "fail" and "SPF not aligned, DKIM not aligned" in finding.detail


def test_bounce_domain_mx_address_only_null_mx_and_nothing(make_settings, fake_dns, dkim_key):
    base = good_records(dkim_key[1])
    del base[(f"{DOMAIN}.", "MX")]
    cases = (
        ({(f"{DOMAIN}.", "MX"): ["0 ."]}, "fail", "null MX"),
        ({(f"{DOMAIN}.", "A"): ["192.0.2.10"]}, "warn", "only an address"),
        ({}, "fail", "neither MX nor address"),
    )
    for records, status, words in cases:
        finding = only(dns_settings(make_settings, fake_dns({**base, **records}), dkim_key), "bounce-domain")
        assert finding.status == status and words in finding.detail


def test_the_vERP_return_path_domain_is_the_one_checked(make_settings, fake_dns, dkim_key):
    records = {**good_records(dkim_key[1]), ("bounces.example.org.", "TXT"): ["v=spf1 -all"]}
    settings = dns_settings(
        make_settings, fake_dns(records), dkim_key, bounce_return_path="b+{token}@bounces.example.org"
    )
    assert "bounces.example.org" in only(settings, "spf").title
    assert only(settings, "bounce-domain").status == "fail"  # that domain has no MX


def test_a_resolver_that_does_not_answer_is_a_failure_with_the_fix(make_settings, dkim_key, monkeypatch):
    monkeypatch.setattr(dns, "TIMEOUT", 0.5)  # nothing listens: the whole timeout is waited
    settings = make_settings(mail_from=FROM, dns_resolver=f"127.0.0.1:{free_port()}")
    finding = only(settings, "spf")
    assert (
        finding.status == "fail"
        and "did not answer" in finding.detail
        and "NEWSLETTER_DNS_RESOLVER" in finding.fix
    )


def test_a_malformed_resolver_setting_stops_the_start(make_settings):
    from newsletter.config import ConfigError

    with pytest.raises(ConfigError, match="NEWSLETTER_DNS_RESOLVER"):
        make_settings(dns_resolver="dns.example.org")


def test_org_domain_uses_the_public_suffix_list():
    assert dns.org_domain("mail.news.example.co.uk") == "example.co.uk"
    assert dns.org_domain("news.example.org") == "example.org"


# --- the transport ----------------------------------------------------------------------


def test_smtp_handshake_with_auth_passes_and_a_wrong_password_fails(make_settings):
    server = SmtpSink(auth=("sender", "right-password"))
    server.start()
    try:
        good = only(make_settings(transport=server.dsn), "transport")
        assert good.status == "pass" and "AUTH as sender accepted" in good.detail
        wrong = server.dsn.replace("right-password", "wrong") + "?timeout=3"
        bad = only(make_settings(transport=wrong), "transport")
        assert bad.status == "fail" and f"127.0.0.1:{server.port}" in bad.detail
        assert "535" in bad.detail, bad.detail  # refused by the server, not a timeout
    finally:
        server.stop()
    assert server.messages == []  # the check sends nothing
    down = only(make_settings(transport=f"smtp://127.0.0.1:{free_port()}?timeout=2"), "transport")
    assert down.status == "fail" and "cannot connect" in down.detail


@pytest.fixture
def esp():
    yield from start_peers(FakeProvider)


def _get(path, check, answer):
    def handle(request):
        assert request["method"] == "GET" and request["path"] == path, request["path"]
        check({k.lower(): v for k, v in request["headers"].items()})
        return answer

    return handle


def test_each_esp_is_asked_its_cheapest_authenticated_call(make_settings, esp):
    cases = [
        ("postmark://TOKEN@default", "/server",
         lambda h: h["x-postmark-server-token"] == "TOKEN" or pytest.fail("token"),
         (200, {}, {"Name": "Signal"}), "pass"),
        ("sendgrid://KEY@default", "/v3/scopes",
         lambda h: h["authorization"] == "Bearer KEY" or pytest.fail("auth"),
         (200, {}, {"scopes": ["mail.send", "user.profile.read"]}), "pass"),
        ("sendgrid://KEY@default", "/v3/scopes", lambda h: None, (200, {}, {"scopes": ["stats.read"]}), "fail"),
        ("mailgun://KEY@mg.example.org", "/v3/domains/mg.example.org",
         lambda h: h["authorization"] == "Basic YXBpOktFWQ==" or pytest.fail("basic api:KEY"),
         (200, {}, {"domain": {"name": "mg.example.org", "state": "unverified"}}), "warn"),
        ("resend://KEY@default", "/domains", lambda h: h["authorization"] == "Bearer KEY" or pytest.fail("auth"),
         (401, {}, {"statusCode": 401, "name": "restricted_api_key", "message": "This API key is restricted to only send emails"}),
         "pass"),
        ("postmark://BAD@default", "/server", lambda h: None,
         (401, {}, {"ErrorCode": 10, "Message": "Bad or missing Server API token."}), "fail"),
    ]  # fmt: skip
    for dsn, path, check, answer, status in cases:
        server = esp(_get(path, check, answer))
        finding = only(make_settings(transport=f"{dsn}?endpoint={server.url}"), "transport")
        assert server.errors == [] and len(server.requests) == 1, (dsn, server.errors)
        assert finding.status == status, (dsn, finding)


def test_ses_get_account_is_signed_and_reads_the_sandbox(make_settings, esp):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    holder = {}

    def answer(request):
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert request["method"] == "GET" and request["path"] == "/v2/email/account"
        signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        check = AWSRequest(
            method="GET", url=holder["url"] + request["path"], headers={n: headers[n] for n in signed}
        )
        check.context["timestamp"] = headers["x-amz-date"]
        signer = SigV4Auth(Credentials("AKIDTEST", "secret/KEY+1"), "ses", "eu-west-1")
        expected = signer.signature(signer.string_to_sign(check, signer.canonical_request(check)), check)
        assert headers["authorization"].endswith(f"Signature={expected}"), "SigV4 signature does not verify"
        return 200, {}, {"SendingEnabled": True, "ProductionAccessEnabled": False,
                         "SendQuota": {"MaxSendRate": 1.0, "Max24HourSend": 200.0}}  # fmt: skip

    server = esp(answer)
    holder["url"] = server.url
    dsn = f"ses://AKIDTEST:secret%2FKEY%2B1@eu-west-1?endpoint={server.url}"
    finding = only(make_settings(transport=dsn), "transport")
    assert server.errors == [] and finding.status == "warn" and "sandbox" in finding.detail


def test_webhook_secrets_of_the_configured_esp(make_settings):
    missing = only(make_settings(transport="postmark://T@default"), "webhooks")
    assert missing.status == "fail" and "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD" in missing.detail
    present = make_settings(
        transport="postmark://T@default",
        webhook_secrets={"postmark_webhook_user": "u", "postmark_webhook_password": "p"},
    )
    assert only(present, "webhooks").status == "pass"
    assert only(make_settings(transport="smtp://127.0.0.1:25"), "webhooks").status == "skip"


# --- the rest of the installation ---------------------------------------------------------


def test_bounce_mailbox_logs_in_or_says_why_not(make_settings, dovecot):
    assert (
        only(make_settings(transport="smtp://127.0.0.1:25", bounce_mailbox=dovecot), "bounce-mailbox").status
        == "pass"
    )
    wrong = only(make_settings(bounce_mailbox=dovecot.replace("imap-test-pw", "nope")), "bounce-mailbox")
    assert wrong.status == "fail" and "authentication" in wrong.detail.lower()
    unset = only(make_settings(transport="smtp://127.0.0.1:25"), "bounce-mailbox")
    assert unset.status == "warn" and "NEWSLETTER_BOUNCE_MAILBOX" in unset.fix


def test_scheduler_lock_database_and_secret_key(app, make_settings):
    settings = make_settings()
    assert only(settings, "scheduler").status == "fail"
    lock = make_lock(db.get_engine(), lease_seconds=30)
    assert lock.try_hold()
    try:
        held = only(settings, "scheduler")
        assert held.status == "pass" and lock.holder in held.detail
    finally:
        lock.release()
    assert only(settings, "database").status == "pass"
    weak = only(make_settings(secret_key="change-me-" + "a" * 40), "secret-key")
    assert weak.status == "fail" and "placeholder" in weak.detail
    short = only(make_settings(secret_key="ab" * 20), "secret-key")
    assert short.status == "fail" and "bits" in short.detail
    assert (
        only(settings, "secret-key").status == "fail"
    )  # the test suite's key is a placeholder, rightly caught


def test_an_unmigrated_database_fails_with_the_command_to_run(make_settings, fresh_database_url):
    db.init_engine(fresh_database_url)
    finding = only(make_settings(database_url=fresh_database_url), "database")
    assert finding.status == "fail" and "newsletter db upgrade" in finding.fix


def test_base_url_and_one_click_against_the_served_app(make_app, live_server_factory):
    server = live_server_factory(make_app)
    settings = server.app.extensions["signal_settings"]
    base = only(settings, "base-url")
    assert base.status == "warn" and "plain http" in base.detail  # reachable, but not https
    one_click = only(settings, "one-click")
    assert one_click.status == "pass" and "answered 200" in one_click.detail
    dead = make_app(base_url=f"http://127.0.0.1:{free_port()}").extensions["signal_settings"]
    assert only(dead, "base-url").status == "fail" and only(dead, "one-click").status == "fail"


def test_the_cli_reports_everything_and_exits_1_on_a_failure(app, make_app, fake_dns, dkim_key):
    server = fake_dns(good_records(dkim_key[1]))
    smtp = SmtpSink()
    smtp.start()
    try:
        runner = make_app(
            mail_from=FROM,
            dns_resolver=server.resolver,
            dkim_domain=DOMAIN,
            dkim_selector="gts1",
            dkim_key_file=str(dkim_key[0]),
            transport=smtp.dsn,
            secret_key="Vq3-8mZ_pX2rL9dK4tY7wB1nC6hJ0sFeGuAoQiRx",
        ).test_cli_runner()
        result = runner.invoke(args=["doctor", "--json"])
        report = json.loads(result.output)
        statuses = {c["check"]: c["status"] for c in report["checks"]}
        assert statuses["spf"] == statuses["dkim"] == statuses["dmarc"] == statuses["transport"] == "pass"
        assert statuses["scheduler"] == "fail" and result.exit_code == 1  # no scheduler runs in the test
        assert set(statuses) == set(checks.NAMES)
        text = runner.invoke(args=["doctor", "--only", "spf", "--only", "dkim"])
        assert text.exit_code == 0 and text.output.count("PASS") == 2 and "2 pass" in text.output
        strict = runner.invoke(args=["doctor", "--only", "bounce-mailbox", "--strict"])
        assert strict.exit_code == 1 and "WARN" in strict.output
    finally:
        smtp.stop()


def test_the_settings_page_shows_the_same_report(app):
    make_account(*ADMIN, "admin")
    client = app.test_client()
    login(client, *ADMIN)
    page = client.get("/editor/settings").get_data(as_text=True)
    assert "Run the checks" in page and "badge-doctor" not in page  # not run on every visit
    report = client.get("/editor/settings/doctor").get_data(as_text=True)
    assert "Database migrated" in report and 'class="badge badge-doctor-pass"' in report
    assert "Scheduler running" in report and "Fix:" in report
